"""The one door every command goes through: its arguments, the clock, settings read once, the store.

Commands get a `Door` instead of reading the config, the environment or the clock themselves,
so "load settings, open the store, close it" and "refuse the public dry-run key" are written
once, and a test hands the whole command line its own clock.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

from newsletter.clock import Clock
from newsletter.config import CONFIG_ENV, Settings, load_settings
from newsletter.store import SqlStore, open_store

DEFAULT_CONFIG = "config.toml"
# Dates whose send time is a representable instant in every zone; anything else is a typo.
FIRST_YEAR, LAST_YEAR = 1970, 9998


def issue_date(value: str) -> date:
    """`--date`: an ISO date (YYYY-MM-DD) an issue could have."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(
            f"expected a date between {FIRST_YEAR} and {LAST_YEAR}, got {value!r}"
        )
    return parsed


@dataclass
class Door:
    args: argparse.Namespace
    clock: Clock
    environ: Mapping[str, str]

    @property
    def config_path(self) -> Path:
        """`--config` (before or after the command), else NEWSLETTER_CONFIG, else ./config.toml."""
        given = getattr(self.args, "config", None) or self.environ.get(CONFIG_ENV)
        return Path(given or DEFAULT_CONFIG)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path, self.environ)

    def secret_settings(self) -> Settings:
        """The settings of a command that signs or verifies links: refuses the dry-run key."""
        self.settings.require_secret_key()
        return self.settings

    @contextmanager
    def store(self, *, read_only: bool = False) -> Iterator[SqlStore]:
        """The configured store, opened (and migrated unless read-only) and closed afterwards."""
        store = open_store(self.settings.database_url, read_only=read_only)
        try:
            yield store
        finally:
            store.close()


def add_config_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """`--config` on the top parser and on every command, so it may come before or after.

    Below the top it defaults to SUPPRESS: a command's parser must not overwrite a value given
    before the command name.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None if top else argparse.SUPPRESS,
        help=f"config file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG})",
    )


def command(
    commands: Any, name: str, *, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Register one (sub)command with its one-line help and the shared `--config` option."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description or _sentence(help)
    )
    add_config_option(parser)
    return parser


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
