"""`newsletter` commands for run, dkim and check: running the engine in production."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
