"""`newsletter` commands for status and bounces: what went out and what came back."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
