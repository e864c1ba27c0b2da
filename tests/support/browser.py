"""Debian's Chromium under Playwright (no browser download), shared by the browser tests.

The browser runs without libfaketime even when the suite does (CI runs it once more a year
ahead under `faketime`): Chromium under the preload library stalls until Playwright's 30 s
timeout, and nothing a browser test checks depends on the browser's own calendar.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PRELOAD = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC", "FAKETIME_NO_CACHE")


def chromium() -> Iterator[Browser]:
    """A running headless Chromium, closed afterwards; the test is skipped without one."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    env: dict[str, str | float | bool] = {
        key: value for key, value in os.environ.items() if key not in PRELOAD
    }
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, env=env)
        try:
            yield launched
        finally:
            launched.close()
