"""One fake clock for every test: time is an input, so each test picks its own "now".

A test that sends the issue of a date runs on `at_send_time(settings, date)`: a few minutes
after that issue's send time, whatever the calendar says. Subprocesses get the same instant as
their wall clock through `tests.support.faketime`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from newsletter.config import Settings
from newsletter.timing import issue_cutoff

# An instant tests use when no issue date matters (a Saturday morning in late 2026).
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


class FakeClock:
    """Stands still until the test moves it; callable like `newsletter.clock.system_clock`."""

    def __init__(self, now: datetime = T0) -> None:
        if now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        self.now += (delta or timedelta()) + timedelta(**parts)
        return self.now


def at_send_time(
    settings: Settings, issue_date: date, after: timedelta = timedelta(minutes=5)
) -> FakeClock:
    """A clock `after` the send time of the issue of `issue_date`."""
    return FakeClock(issue_cutoff(settings, issue_date) + after)
