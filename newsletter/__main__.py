"""`python -m newsletter` is the same as the `newsletter` console script."""

from newsletter.cli.main import main

raise SystemExit(main())
