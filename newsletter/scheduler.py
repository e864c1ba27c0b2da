"""`newsletter run`: one process sends each day's issue at its local send time and serves the
web app; `newsletter run --once` makes the same decision once, for cron or a systemd timer.

When (email standards K):
- The issue of date D is due at D's cutoff (`selection.issue_cutoff`: `send_time` on D in
  `timezone`), the instant that also closes its window of articles. `DailyTrigger` fires there
  once per local calendar day. APScheduler's CronTrigger is not used: across a DST fall-back it
  fires twice for a send time inside the repeated hour (01:30 on 25 Oct 2026 in London, once in
  BST and once in GMT). A send time that does not exist on a spring-forward day fires at the
  instant `issue_cutoff` gives it, an hour later on the wall clock.
- After downtime the daily job's first run time is the latest due time, even if past, and
  APScheduler's misfire_grace_time (= `delivery.stale_after_hours`) decides: within the stale
  guard it sends at start-up, beyond it the run is logged as missed.
- Never two at once: both jobs take one lock and have max_instances=1 and coalesce=True;
  other processes are kept out by the issue lease. Never two issues for one date: the pipeline
  resumes the stored issue of a date and only mails readers without an outcome.
- A second job retries an unfinished issue (deferred readers, an interrupted send) every
  `SWEEP_EVERY` until its retry deadline, as repeated cron runs would; it never starts an issue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import uvicorn
from apscheduler.schedulers.asyncio import (  # type: ignore[import-untyped, unused-ignore]
    AsyncIOScheduler,
)
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped, unused-ignore]
from apscheduler.triggers.interval import (  # type: ignore[import-untyped, unused-ignore]
    IntervalTrigger,
)

from .config import Settings
from .errors import NewsletterError
from .models import IssueStatus, RunSummary, SubscriberStatus
from .pipeline import Clock, Run, run_issue, utc_now
from .ports import Store, Transport
from .progress import SendProgress
from .selection import issue_cutoff
from .sending import Signer, retry_deadline
from .web_server import uvicorn_config

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from .web import WebStore

log = logging.getLogger(__name__)
SWEEP_EVERY = timedelta(minutes=10)
IssueRunner = Callable[[date], Awaitable[object]]


def latest_due_date(settings: Settings, now: datetime) -> date:
    """The date of the latest issue whose send time is not in the future."""
    day = now.astimezone(settings.timezone).date()
    while issue_cutoff(settings, day) > now:
        day -= timedelta(days=1)
    return day


class DailyTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at `issue_cutoff(day)` for each local calendar day, never twice for one day."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            day = latest_due_date(self.settings, now)
            if issue_cutoff(self.settings, day) < now:
                day += timedelta(days=1)
        else:
            day = previous_fire_time.astimezone(self.settings.timezone).date() + timedelta(days=1)
        return issue_cutoff(self.settings, day).astimezone(self.settings.timezone)

    def __str__(self) -> str:
        return f"daily at {self.settings.send_time:%H:%M} {self.settings.timezone.key}"


@dataclass(frozen=True)
class Due:
    """What a run started now should do, and why (the log and `run --once` print the why)."""

    issue_date: date
    send: bool
    stored: bool  # the issue exists already: a send resumes it
    reason: str


def what_is_due(settings: Settings, store: Store, now: datetime) -> Due:
    """The one decision the daily job, the retry sweep and `run --once` all make."""
    day = latest_due_date(settings, now)
    due_at = issue_cutoff(settings, day)
    issue = store.get_issue(settings.name, day)
    if issue is None:
        late = now - due_at
        window = timedelta(hours=settings.delivery.stale_after_hours)
        when = f"the issue of {day} was due at {due_at.astimezone(settings.timezone):%H:%M %Z}"
        if late <= window:
            return Due(day, True, False, f"{when}, {_hours(late)} ago")
        reason = (
            f"{when}, {_hours(late)} ago, beyond delivery.stale_after_hours ({_hours(window)}); "
            f"`newsletter send --date {day} --force` sends it anyway"
        )
        return Due(day, False, False, reason)
    if issue.status is IssueStatus.SENT:
        return Due(day, False, True, f"the issue of {day} was sent")
    deadline = retry_deadline(settings, issue)
    if now >= deadline:
        return Due(day, False, True, f"the issue of {day} is past its retry deadline")
    waiting = next(store.pending_recipients(issue.id, batch_size=1, retry_due=now), None)
    if waiting is None and store.outcome_counts(issue.id).get("deferred"):
        return Due(day, False, True, f"the issue of {day} has deferred readers, none due yet")
    return Due(day, True, True, f"the issue of {day} is unfinished; resuming it")


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f} h"


@dataclass
class IssueSender:
    """The scheduled work itself: the same `run_issue` that `newsletter send` calls."""

    settings: Settings
    store: Store
    transport: Transport
    stop: asyncio.Event
    sign: Signer | None = None
    report: Callable[[RunSummary], None] = lambda summary: None
    clock: Clock = utc_now

    async def __call__(self, issue_date: date) -> RunSummary:
        run = Run(
            self.settings, self.store, self.transport,
            clock=self.clock, stop_event=self.stop, sign=self.sign,
        )  # fmt: skip
        total = self.store.count_by_status()[SubscriberStatus.ACTIVE]
        with SendProgress(total) as progress:
            run.on_outcome = progress
            summary, _ = await run_issue(run, issue_date)
        self.report(summary)
        return summary


@dataclass
class DailyScheduler:
    """The long-running process's two jobs on an AsyncIOScheduler in the running loop."""

    settings: Settings
    store: Store
    runner: IssueRunner
    clock: Clock = utc_now
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=self.settings.timezone)

    def start(self) -> None:
        """Add both jobs and start; the daily one is first due at the latest due time."""
        now = self.clock()
        log.info("at start-up: %s", what_is_due(self.settings, self.store, now).reason)
        first = issue_cutoff(self.settings, latest_due_date(self.settings, now))
        grace = max(1, round(self.settings.delivery.stale_after_hours * 3600))
        self.scheduler.add_job(
            self.daily, DailyTrigger(self.settings), id="daily-issue", name="daily issue",
            max_instances=1, coalesce=True, misfire_grace_time=grace, next_run_time=first,
        )  # fmt: skip
        sweep = IntervalTrigger(seconds=SWEEP_EVERY.total_seconds(), start_date=now + SWEEP_EVERY)
        self.scheduler.add_job(
            self.sweep, sweep, id="resume-unfinished", name="resume unfinished issue",
            max_instances=1, coalesce=True, misfire_grace_time=None,
        )  # fmt: skip
        self.scheduler.start()

    async def daily(self) -> None:
        await self._tick(resume_only=False)

    async def sweep(self) -> None:
        await self._tick(resume_only=True)

    async def _tick(self, *, resume_only: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            async with self.lock:
                due = what_is_due(self.settings, self.store, self.clock())
                if not due.send or (resume_only and not due.stored):
                    if not resume_only:
                        log.info("nothing to send: %s", due.reason)
                    return
                log.info("sending: %s", due.reason)
                await self.runner(due.issue_date)
        except NewsletterError as exc:
            log.error("the run for the issue stopped: %s", exc)
        finally:
            self.running.discard(task)

    def cancel_running(self) -> None:
        for task in self.running:
            task.cancel()

    async def stop(self, grace: float) -> None:
        """Let a send that was told to stop finish its messages in flight, then shut down."""
        self.scheduler.pause()
        pending = {task for task in self.running if not task.done()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=grace)
        self.scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn


# The process: signals, the web server, and the order in which they stop.

SIGNALS = (signal.SIGTERM, signal.SIGINT)
SHUTDOWN_GRACE = 20.0  # seconds for messages in flight after SIGTERM; a stalled relay is cut off


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, force: Callable[[], object]) -> Iterator[None]:
    """The first SIGTERM/SIGINT asks for a graceful stop, a second one forces it."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: cancelling what is still running", name)
            force()
            return
        log.info("%s: finishing the messages in flight, then stopping", name)
        stop.set()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


async def run_once(
    settings: Settings, store: Store, sender: IssueSender
) -> tuple[Due, RunSummary | None]:
    """`run --once`: send (or resume) what is due now, if anything; SIGTERM stops it gracefully.

    The summary is None when nothing was due or a second signal cancelled the send.
    """
    due = what_is_due(settings, store, sender.clock())
    if not due.send:
        return due, None
    log.info("sending: %s", due.reason)
    task = asyncio.ensure_future(sender(due.issue_date))
    with stop_on_signals(sender.stop, task.cancel):
        await asyncio.wait({task})
    return due, None if task.cancelled() else task.result()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops the scheduler before the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def web_app(settings: Settings, store: WebStore, transport: Transport, clock: Clock) -> ASGIApp:
    """The subscription web app this process serves; imported only when it is served."""
    from .web import create_app

    return create_app(settings, store, transport, clock=clock)


async def _start_web(settings: Settings, app: ASGIApp) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn_config(settings, app, log_config=None)  # as `newsletter serve` runs it
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if task.done():
        task.result()  # raises what stopped it (uvicorn exits on a port it cannot bind)
        raise NewsletterError(f"the web server did not start on {config.host}:{config.port}")
    return server, task


async def serve(settings: Settings, store: Store, sender: IssueSender, app: ASGIApp | None) -> None:
    """`run`: the web app (when given) and the daily schedule until SIGTERM/SIGINT.

    The web server starts first, so a port already in use stops the process before anything
    is sent. On a signal the running send takes no new message and finishes those on the wire
    (each reply is recorded at once, so the ledger is current), then the web server stops.
    """
    schedule = DailyScheduler(settings, store, sender, sender.clock)
    with stop_on_signals(sender.stop, schedule.cancel_running):
        server, web = await _start_web(settings, app) if app is not None else (None, None)
        schedule.start()
        log.info("running: the issue goes out %s", DailyTrigger(settings))
        waiters = {asyncio.ensure_future(sender.stop.wait())} | ({web} if web else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        sender.stop.set()
        await schedule.stop(SHUTDOWN_GRACE)
        if server is not None and web is not None:
            server.should_exit = True
            await web
