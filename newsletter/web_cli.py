"""`newsletter serve`: the subscription web app (subscribe, confirm, unsubscribe, archive)."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
