"""A subprocess's wall clock set to the test's instant, through libfaketime (Debian `faketime`).

The engine reads the wall clock only in `newsletter.clock.system_clock`; a test that starts the
real command in its own process (a crash, a signal, cron) hands it the test's "now" this way,
so it too passes on any calendar day. The clock starts at that instant and then runs; the
monotonic clock (asyncio's timers) is left alone.
"""

from __future__ import annotations

import glob
from datetime import UTC, datetime

import pytest

PATTERNS = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def library() -> str:
    for pattern in PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    pytest.fail("libfaketime is not installed (Debian: apt-get install faketime)")


def wall_clock_env(now: datetime) -> dict[str, str]:
    """Environment variables that start a child's wall clock at `now` (then it runs on)."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "LD_PRELOAD": library(),
        "FAKETIME": f"@{stamp}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
        "TZ": "UTC",
    }
