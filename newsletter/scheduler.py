"""`newsletter run`: one process sends each day's issue at its local send time and serves the
web app; `newsletter run --once` makes the same decision once, for cron or a systemd timer.

When:
- The issue of date D is due at D's cutoff (`timing.issue_cutoff`: `send_time` on D in
  `timezone`), the instant that also closes its window of articles. `DailyTrigger` fires there
  once per local calendar day. APScheduler's CronTrigger is not used: across a DST fall-back it
  fires twice for a send time inside the repeated hour (01:30 on 25 Oct 2026 in London, once in
  BST and once in GMT). A send time that does not exist on a spring-forward day fires at the
  instant `issue_cutoff` gives it, an hour later on the wall clock.
- What to send is always `lifecycle.plan`: the same decision `run --once` makes. A second job
  runs it at start-up (catching up after downtime, within the stale window only) and then every
  `SWEEP_EVERY`, as repeated cron runs would: it resumes every unfinished issue until its own
  retry deadline and logs, as errors, issues and days that need the operator.
- The daily job's first run is the next send time, never one in the past, so APScheduler never
  reports a "missed" run at start-up: catching up is the plan's business.
- Never two at once: both jobs take one lock and have max_instances=1 and coalesce=True;
  other processes are kept out by the issue lease. Never two issues for one date: the pipeline
  resumes the stored issue of a date and only mails readers without an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import (  # type: ignore[import-untyped, unused-ignore]
    AsyncIOScheduler,
)
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped, unused-ignore]
from apscheduler.triggers.interval import (  # type: ignore[import-untyped, unused-ignore]
    IntervalTrigger,
)

from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.lifecycle import Plan, plan, what
from newsletter.models import Frequency
from newsletter.ports import Store
from newsletter.timing import issue_cutoff, latest_due_date

log = logging.getLogger(__name__)
SWEEP_EVERY = timedelta(minutes=10)
T = TypeVar("T")
IssueRunner = Callable[[date, Frequency], Awaitable[T]]


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


@dataclass
class DailyScheduler:
    """The long-running process's two jobs on an AsyncIOScheduler in the running loop."""

    settings: Settings
    store: Store
    runner: IssueRunner[object]
    clock: Clock
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=self.settings.timezone)

    def start(self) -> None:
        """Add both jobs and start: the plan at once and every SWEEP_EVERY, the daily job at the
        next send time."""
        now = self.clock()
        grace = max(1, round(self.settings.delivery.stale_after_hours * 3600))
        self.scheduler.add_job(
            self.tick, DailyTrigger(self.settings), id="daily-issue", name="daily issue",
            max_instances=1, coalesce=True, misfire_grace_time=grace,
        )  # fmt: skip
        sweep = IntervalTrigger(seconds=SWEEP_EVERY.total_seconds(), start_date=now + SWEEP_EVERY)
        self.scheduler.add_job(
            self.tick, sweep, id="plan", name="catch up and resume unfinished issues",
            max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=now,
        )  # fmt: skip
        self.scheduler.start()

    async def tick(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            async with self.lock:
                await run_plan(self.settings, self.store, self.runner, self.clock)
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


# The process: signals, and the order in which things stop.

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


async def run_plan(
    settings: Settings, store: Store, runner: IssueRunner[T], clock: Clock
) -> tuple[Plan, list[T]]:
    """Send what the plan says, oldest issue first; return the plan as it stands afterwards.

    The plan is made again after the sends: building a new issue may abandon an older one that
    reached nobody (the new one carries its articles), which settles that alert.
    """
    before = plan(settings, store, clock())
    results = []
    stopped = []
    for note in before.notes:
        log.info("%s", note)
    for issue_date, kind in before.sends:
        try:
            results.append(await runner(issue_date, kind))
        except NewsletterError as exc:  # a refused relay, a store fault: the next run resumes
            stopped.append(f"the run for {what(issue_date, kind)} stopped: {exc}")
    after = plan(settings, store, clock()) if before.sends else before
    after.alerts[:0] = stopped
    for alert in after.alerts:
        log.error("needs the operator: %s", alert)
    return after, results


async def run_once(
    settings: Settings, store: Store, runner: IssueRunner[T], clock: Clock, stop: asyncio.Event
) -> tuple[Plan, list[T] | None]:
    """`run --once`: send (or resume) what is due now; SIGTERM stops it gracefully.

    The results are None when a second signal cancelled the sends.
    """
    task = asyncio.ensure_future(run_plan(settings, store, runner, clock))
    with stop_on_signals(stop, task.cancel):
        await asyncio.wait({task})
    if task.cancelled():
        return plan(settings, store, clock()), None
    return task.result()
