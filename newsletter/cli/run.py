"""`newsletter run [--once]` and `newsletter check`: running in production.

`run` is the one-process deployment: the daily schedule (`scheduler.py`) and the web app in one
event loop; `run --once` makes the same decision once, for cron or a systemd timer, and exits
with `send`'s statuses. APScheduler, uvicorn, DNS and DKIM libraries are imported inside the
handlers, so `newsletter send` starts without them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from newsletter.cli import runtime
from newsletter.cli.door import Door, command
from newsletter.cli.operator import remember_feeds
from newsletter.cli.progress import SendProgress
from newsletter.cli.report import (
    EXIT_ERROR,
    EXIT_NOT_SENT,
    EXIT_OK,
    EXIT_PARTIAL,
    exit_status,
    format_summary,
)
from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.mail import dkim_signer
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import Frequency, RunSummary
from newsletter.ports import Signer, Store, Transport
from newsletter.store import SqlStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from newsletter.web.metrics import Metrics

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_commands(commands: Any) -> None:
    run = command(
        commands,
        "run",
        help="send each day's issue at its send time and serve the web app, until stopped",
        description="The long-running form: sends the issue at send_time in timezone, catches "
        "up after downtime within delivery.stale_after_hours, resumes unfinished issues, and "
        "serves the web app in the same process. SIGTERM stops it after the messages in flight.",
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="send (or resume) the issue that is due now, if any, then exit: the cron form",
    )
    run.add_argument(
        "--no-web", action="store_true", help="do not serve the web app (`newsletter serve` does)"
    )
    run.set_defaults(handler=cmd_run)
    check = command(
        commands,
        "check",
        help="check a configuration before the first real send; exit 1 if any check fails",
    )
    check.set_defaults(handler=cmd_check)


@dataclass
class IssueSender:
    """The scheduled work itself: the same `run_issue` that `newsletter send` calls."""

    settings: Settings
    store: Store
    transport: Transport
    clock: Clock
    stop: asyncio.Event
    sign: Signer | None = None
    metrics: Metrics | None = None

    async def __call__(self, issue_date: date, kind: Frequency = Frequency.DAILY) -> RunSummary:
        from newsletter.pipeline import Run, run_issue

        run = Run(
            self.settings, self.store, self.transport, self.clock,
            stop_event=self.stop, sign=self.sign,
        )  # fmt: skip
        started = time.perf_counter()  # the run's duration, for the send rate
        with SendProgress(lambda: self.store.count_active(kind)) as progress:
            run.on_outcome = progress
            summary, _ = await run_issue(run, issue_date, kind)
        print(format_summary(self.settings, summary), flush=True)
        if isinstance(self.store, SqlStore):
            remember_feeds(self.store, summary, self.clock())
        if self.metrics is not None:
            self.metrics.observe_run(summary, time.perf_counter() - started)
        return summary


def cmd_run(door: Door) -> int:
    from newsletter.scheduler import run_once

    settings = door.secret_settings()
    sign = dkim_signer(settings.dkim, door.clock)  # keys are read once, before anything runs
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # feed fetches are in the summary
    transport = SmtpTransport(settings.smtp)
    with door.store() as store:
        sender = IssueSender(settings, store, transport, door.clock, asyncio.Event(), sign)
        if not door.args.once:
            app = None if door.args.no_web else _web_app(door, store, transport, sign)
            sender.metrics = _metrics(door, store, app)
            runtime.run(serve(settings, store, sender, app))
            return EXIT_OK
        done, summaries = runtime.run(run_once(settings, store, sender, door.clock, sender.stop))
    for alert in done.alerts:
        print(f"needs the operator: {alert}", file=sys.stderr)
    if summaries is None or sender.stop.is_set():
        print("stopped before the end; the next run resumes where this one stopped")
        return EXIT_PARTIAL
    if not summaries:
        print(f"nothing to send: {done.describe()}")
    code = max((exit_status(summary) for summary in summaries), default=EXIT_OK)
    return max(code, EXIT_NOT_SENT) if done.alerts else code


def _web_app(door: Door, store: Any, transport: Transport, sign: Signer | None) -> ASGIApp:
    from newsletter.web import create_app

    return create_app(door.settings, store, transport, door.clock, sign)


def _metrics(door: Door, store: SqlStore, app: ASGIApp | None) -> Metrics | None:
    """The web app's metrics (it counts requests too), or, without the app, our own."""
    from newsletter.web.metrics import Metrics
    from newsletter.web.operator import operator_of

    operator = operator_of(app)
    if operator is not None:
        return operator.metrics
    enabled = door.settings.metrics.enabled
    return Metrics(store, door.settings.name, door.clock) if enabled else None


async def serve(settings: Settings, store: Store, sender: IssueSender, app: ASGIApp | None) -> None:
    """`run`: the web app (when given) and the daily schedule until SIGTERM/SIGINT.

    The web server starts first, so a port already in use stops the process before anything
    is sent. On a signal the running send takes no new message and finishes those on the wire
    (each reply is recorded at once, so the ledger is current), then the web server stops.
    """
    from newsletter.scheduler import SHUTDOWN_GRACE, DailyScheduler, DailyTrigger, stop_on_signals
    from newsletter.web.server import start_embedded

    schedule = DailyScheduler(settings, store, sender, sender.clock)
    with stop_on_signals(sender.stop, schedule.cancel_running):
        server, web = await start_embedded(settings, app) if app is not None else (None, None)
        scraped = await _start_metrics(settings, sender.metrics)
        schedule.start()
        log.info("running: the issue goes out %s", DailyTrigger(settings))
        waiters = {asyncio.ensure_future(sender.stop.wait())} | ({web} if web else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        sender.stop.set()
        await schedule.stop(SHUTDOWN_GRACE)
        for running, task in (server, web), scraped:
            if running is not None and task is not None:
                running.should_exit = True
                await task


async def _start_metrics(
    settings: Settings, metrics: Metrics | None
) -> tuple[Any, asyncio.Task[None] | None]:
    """/metrics on its own listener ([metrics] host:port), when metrics are on."""
    from newsletter.web.metrics import metrics_app
    from newsletter.web.server import start_embedded

    if metrics is None:
        return None, None
    app = metrics_app(metrics, settings.metrics.token)
    return await start_embedded(settings, app, settings.metrics.host, settings.metrics.port)


def cmd_check(door: Door) -> int:
    from newsletter.cli.checks import Status, run_checks  # DNS and DKIM: only this command

    results = run_checks(door.settings, door.clock)
    for result in results:
        print(result.line())
    failed = sum(result.status is Status.FAIL for result in results)
    if failed:
        print(f"{failed} of {len(results)} checks failed")
        return EXIT_ERROR
    print("ready: every check passed or was skipped with a note")
    return EXIT_OK
