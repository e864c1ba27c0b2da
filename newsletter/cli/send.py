"""`newsletter send`: build the day's issue and mail it, or preview it (`--dry-run`, `--to`)."""

from __future__ import annotations

import asyncio
import signal
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.addresses import normalize_address
from newsletter.cli import runtime
from newsletter.cli.door import Door, command, issue_date
from newsletter.cli.operator import remember_feeds
from newsletter.cli.preview import PREVIEW_READER, write_preview
from newsletter.cli.processes import run_processes
from newsletter.cli.progress import SendProgress
from newsletter.cli.report import exit_status, format_prepared, format_summary
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.mail import dkim_signer
from newsletter.mail.outbox import OutboxTransport
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import Digest, Frequency, RunSummary
from newsletter.ports import Store, Transport

if TYPE_CHECKING:  # the send's weight (render, feeds) loads when a send starts, not for `status`
    from newsletter.pipeline import Run


def add_commands(commands: Any) -> None:
    send = command(
        commands,
        "send",
        help="build the day's issue and send it to every confirmed subscriber",
        description="Collect the day's articles, render the digest once and send it. "
        "A second run for the same date only sends to those without a recorded outcome.",
    )
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing, store nothing; write the digest (HTML, text, .eml) to the output dir",
    )
    send.add_argument(
        "--date", type=issue_date, help="build the issue of this date (YYYY-MM-DD; default today)"
    )
    send.add_argument("--to", metavar="ADDRESS", help="send one test copy to ADDRESS only")
    send.add_argument(
        "--force",
        action="store_true",
        help="send even if the send time is longer ago than delivery.stale_after_hours; also "
        "resumes an issue held for the operator or past its retry deadline (to the readers "
        "never tried)",
    )
    send.add_argument(
        "--weekly",
        action="store_true",
        help="the weekly round-up of the date (for readers who chose weekly) instead of the daily",
    )
    send.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="send with N processes on this host, sharing the issue's batches (default 1)",
    )
    send.set_defaults(handler=cmd_send)


def cmd_send(door: Door) -> int:
    args = door.args
    if args.processes != 1:
        if args.processes < 1 or args.dry_run or args.to:
            raise ConfigError(
                "--processes", "(command line)", "a whole number >= 1, not with --dry-run or --to"
            )
        status = _prepare_once(door, door.secret_settings())  # one error, not one per copy
        return run_processes(door, args.processes) if status is None else status
    settings = door.settings if args.dry_run else door.secret_settings()
    transport: Transport = OutboxTransport() if args.dry_run else SmtpTransport(settings.smtp)
    sign = dkim_signer(settings.dkim, door.clock)
    from newsletter.pipeline import Run, send_test_copy

    with door.store(read_only=args.dry_run or bool(args.to)) as store:
        run = Run(
            settings, store, transport, door.clock, dry_run=args.dry_run, force=args.force,
            sign=sign,
        )  # fmt: skip
        if args.to:
            address = normalize_address(args.to, smtputf8=settings.smtp.smtputf8)
            summary = runtime.run(send_test_copy(run, address, args.date, _kind(door)))
            digest = None
        else:
            kind = _kind(door)
            with SendProgress(lambda: store.count_active(kind)) as progress:
                run.on_outcome = progress
                summary, digest = runtime.run(_until_signalled(run, args.date, kind))
            remember_feeds(store, summary, door.clock())  # the dashboard's feed health
        if args.dry_run and digest is not None:
            files = _preview(run, store, digest, summary)
            summary.output_files = tuple(str(path) for path in files)
            eml = next(path for path in files if path.suffix == ".eml")
            summary.message_bytes = summary.message_bytes or eml.stat().st_size
    print(format_summary(settings, summary))
    return exit_status(summary)


def _prepare_once(door: Door, settings: Settings) -> int | None:
    """`--processes N`: the issue is collected, rendered and stored here, once, before the
    copies start, and each copy resumes it; N copies would otherwise each fetch the feeds and
    render at the same moment. A day with nothing to send (empty, every feed failed) starts no
    copy: its summary and status are the command's. None: start the copies."""
    from newsletter.pipeline import Run, prepare_shared

    with door.store() as store:
        # Nothing is sent here. Not the dry run's transport: should that ever change, its
        # "250 not sent" would be recorded as delivered, and the reader would never get it.
        transport = SmtpTransport(settings.smtp)
        run = Run(settings, store, transport, door.clock, force=door.args.force)
        summary, ready = runtime.run(prepare_shared(run, door.args.date, _kind(door)))
        remember_feeds(store, summary, door.clock())
    if not ready:
        print(format_summary(settings, summary))
        return exit_status(summary)
    lines = format_prepared(settings, summary)
    if summary.note:  # an earlier issue that reached nobody, carried into this one
        lines.append(summary.note)
    print("\n".join(lines), flush=True)
    return None


def _kind(door: Door) -> Frequency:
    if not door.args.weekly:
        return Frequency.DAILY
    if not door.settings.weekly.enabled:
        raise ConfigError("weekly.enabled", str(door.settings.path), "true for --weekly")
    return Frequency.WEEKLY


async def _until_signalled(
    run: Run, day: date | None, kind: Frequency
) -> tuple[RunSummary, Digest | None]:
    """SIGTERM/SIGINT stop the send gracefully: messages whose data is on the wire finish and
    are recorded (`pool.deliver`)."""
    run.stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, run.stop_event.set)
    from newsletter.pipeline import run_issue

    try:
        return await run_issue(run, day, kind)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _preview(run: Run, store: Store, digest: Digest, summary: RunSummary) -> tuple[Path, ...]:
    """A stand-in reader, never a real one: files left on disk must not carry a subscriber's
    address or a link that would unsubscribe them."""
    reader = run.recipient(0, PREVIEW_READER)
    return write_preview(run.settings, digest, reader, summary.issue_date, run.clock(), run.sign)
