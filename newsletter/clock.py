"""The one place the engine reads the wall clock.

Time is an input: every part that needs "now" is handed a `Clock` and calls it, so a test runs
an issue on a clock derived from its issue date and passes on any calendar day, and a dry run
can rehearse any date. Only the command line's entry point (`cli.main.main`) reaches for
`system_clock`; everything below it takes the clock it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)
