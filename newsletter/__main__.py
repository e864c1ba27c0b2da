"""`python -m newsletter` is the same as the `newsletter` console script."""

from .cli import main

raise SystemExit(main())
