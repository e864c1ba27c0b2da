"""`newsletter`: the parser, the one door, and how errors become exit statuses.

Every command module registers its commands with `add_commands`; each handler takes a `Door`
and returns an exit status. No traceback reaches the operator: an error the engine raises on
purpose is one line on stderr and a documented status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from newsletter import __version__
from newsletter.cli import delivery, dkim, logs, operator, run, send, serve, subscribers
from newsletter.cli.door import Door, add_config_option
from newsletter.cli.report import EXIT_ERROR, EXIT_NOT_SENT, EXIT_STATUSES
from newsletter.clock import Clock, system_clock
from newsletter.errors import NewsletterError, ServerRefusedError, StaleIssueError

COMMAND_MODULES = (send, subscribers, delivery, serve, run, dkim, operator)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsletter",
        description="The daily REE update: collect the day's articles, render one digest, "
        "mail every confirmed subscriber.",
        epilog="exit statuses:\n"
        + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_STATUSES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_config_option(parser, top=True)
    parser.add_argument(
        "--log-format", choices=logs.FORMATS, default="plain", help="log lines as plain text "
        "(default) or one JSON object per line"
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(
    argv: list[str] | None = None,
    *,
    clock: Clock = system_clock,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one command; usage errors exit 2 (argparse), everything else returns a status."""
    args = build_parser().parse_args(argv)
    door = Door(args, clock, os.environ if environ is None else environ)
    logs.configure(args.log_format)
    try:
        code: int = args.handler(door)
    except ServerRefusedError as exc:
        print(f"error: the mail server refused us, run stopped: {exc}", file=sys.stderr)
        return EXIT_NOT_SENT
    except StaleIssueError as exc:
        print(f"not sent: {exc}", file=sys.stderr)
        return EXIT_NOT_SENT
    except NewsletterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return code
