"""`newsletter admin hash-password`: the password hash `[admin] password_hash` expects; and
`remember_feeds`, which `send` and `run` call after a run for the dashboard's feed health."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from typing import Any

from newsletter.cli.door import Door, command
from newsletter.errors import ConfigError, StoreError
from newsletter.models import RunSummary
from newsletter.store import SqlStore


def add_commands(commands: Any) -> None:
    admin = command(commands, "admin", help="the operator's dashboard at /admin")
    subcommands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    hashing = command(
        subcommands,
        "hash-password",
        help="read a password and print its hash for [admin] password_hash",
        description="Reads the password twice from the terminal (or once from standard input "
        "when it is not a terminal) and prints its scrypt hash; put the hash in "
        "NEWSLETTER_ADMIN_PASSWORD_HASH or [admin] password_hash. The password is not stored.",
    )
    hashing.set_defaults(handler=cmd_hash_password)


def cmd_hash_password(door: Door) -> int:
    from newsletter.web.admin.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("password", "(terminal)", "the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        raise ConfigError("password", "(input)", "use at least 12 characters")
    print(hash_password(password))
    return 0


def remember_feeds(store: SqlStore, summary: RunSummary, now: datetime) -> None:
    """Record each feed's result for the dashboard; never the run's business if it fails.

    It runs after the send, so a database that went away during the send (the run already
    ends with exit 3 and its summary) must not turn into another error here.
    """
    if summary.dry_run or not summary.feeds:
        return
    try:
        store.record_feed_reports(summary.feeds, now)
    except StoreError as exc:
        print(f"warning: feed health not recorded: {exc}", file=sys.stderr)
