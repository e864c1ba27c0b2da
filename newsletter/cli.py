"""`newsletter` commands: parse flags, load config once, call the pipeline or the store, print.

The exit statuses are documented in `report.py` (and the README).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import date
from pathlib import Path

from . import delivery_cli, ops_cli, runtime, subscribers_cli, web_cli
from .addresses import normalize_address
from .config import SECRET_ENV, load_settings
from .errors import ConfigError, NewsletterError, ServerRefusedError, StaleIssueError
from .models import Digest, RunSummary, SubscriberStatus
from .pipeline import Run, run_issue, send_test_copy
from .ports import Store
from .preview import PREVIEW_READER, write_preview
from .progress import SendProgress
from .report import EXIT_ERROR, EXIT_NOT_SENT, exit_status, format_summary
from .sending import dkim_signer
from .store import open_store
from .transport import OutboxTransport, SmtpTransport


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsletter", description="The daily REE update: collect, render, send."
    )
    parser.add_argument(
        "--config", default="config.toml", help="config file (default: ./config.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    send = commands.add_parser(
        "send",
        help="build today's issue and send it to every confirmed subscriber",
        description="Collect the day's articles, render the digest once and send it. "
        "A second run for the same date only sends to those without a recorded outcome.",
    )
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing, store nothing; write the digest (HTML, text, .eml) to the output dir",
    )
    send.add_argument("--date", type=_date, help="build the issue of this date (YYYY-MM-DD)")
    send.add_argument("--to", metavar="ADDRESS", help="send one test copy to ADDRESS only")
    send.add_argument(
        "--force",
        action="store_true",
        help="send even if the send time is longer ago than delivery.stale_after_hours",
    )
    send.set_defaults(handler=cmd_send)
    for module in (subscribers_cli, delivery_cli, web_cli, ops_cli):
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
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


def cmd_send(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not args.dry_run and not settings.secret_key_is_set:
        raise ConfigError(SECRET_ENV, "(environment)", "must be set to sign unsubscribe links")
    store = open_store(settings.database_url, read_only=args.dry_run or bool(args.to))
    transport = OutboxTransport() if args.dry_run else SmtpTransport(settings.smtp)
    signer = dkim_signer(settings.dkim)
    run = Run(settings, store, transport, dry_run=args.dry_run, force=args.force)
    run.sign = signer
    try:
        if args.to:
            summary = runtime.run(send_test_copy(run, normalize_address(args.to), args.date))
            digest = None
        else:
            total = store.count_by_status()[SubscriberStatus.ACTIVE]
            with SendProgress(total) as progress:
                run.on_outcome = progress
                summary, digest = runtime.run(_until_signalled(run, args.date))
        if args.dry_run and digest is not None:
            files = _preview(run, store, digest, summary)
            summary.output_files = tuple(str(path) for path in files)
            eml = next(path for path in files if path.suffix == ".eml")
            summary.message_bytes = summary.message_bytes or eml.stat().st_size
    finally:
        store.close()
    print(format_summary(settings, summary))
    return exit_status(summary)


async def _until_signalled(run: Run, issue_date: date | None) -> tuple[RunSummary, Digest | None]:
    """SIGTERM/SIGINT stop the send gracefully: in-flight messages finish and are recorded."""
    run.stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, run.stop_event.set)
    try:
        return await run_issue(run, issue_date)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _preview(run: Run, store: Store, digest: Digest, summary: RunSummary) -> tuple[Path, ...]:
    first = next(store.iter_subscribers(SubscriberStatus.ACTIVE), None)
    reader = run.recipient(first.id, first.email) if first else run.recipient(0, PREVIEW_READER)
    return write_preview(run.settings, digest, reader, summary.issue_date, run.clock())
