"""The scheduler: the right local time across DST, one issue per date, catch-up only within the
stale window, and `newsletter run` as a process that serves the web app and stops on SIGTERM.

APScheduler is driven by a test clock: its modules read `datetime.now`, which the `clock`
fixture replaces, and each step calls `wakeup()` as its timer would. No test waits in real time
for a send time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

import httpx
import pytest

from newsletter.cli import main
from newsletter.config import Settings, load_settings
from newsletter.models import (
    DeliveryStatus,
    Digest,
    IssueStatus,
    Outcome,
    RunSummary,
    SubscriberStatus,
)
from newsletter.ports import Store
from newsletter.scheduler import DailyScheduler, DailyTrigger, IssueSender, what_is_due
from newsletter.selection import issue_cutoff
from newsletter.store import SqlStore, open_store
from newsletter.transport import SmtpTransport
from tests.smtp_server import SmtpServer
from tests.world import ROOT, SAMPLE, SECRET, closed_port, make_config

LONDON = ZoneInfo("Europe/London")
ACTIVE = SubscriberStatus.ACTIVE
DIGEST = Digest("subject", "preheader", "<p>html</p>", "text", ())
Calls = list[tuple[datetime, date]]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One clock for our code and APScheduler's scheduler and executor."""
    fake = Clock()

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return cls.fromtimestamp(fake.now.timestamp(), tz)

    for module in ("apscheduler.schedulers.base", "apscheduler.executors.base"):
        monkeypatch.setattr(f"{module}.datetime", FakeDatetime)
    return fake


def settings_for(tmp_path: Path, send_time: str = "07:00", smtp_port: int = 0) -> Settings:
    swaps = {'send_time = "07:00"': f'send_time = "{send_time}"'}
    port = smtp_port or closed_port()
    return load_settings(make_config(tmp_path, [("Sample", str(SAMPLE))], port, replace=swaps))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'scheduler.db'}")
    yield opened
    opened.close()


def recorder(settings: Settings, store: Store, clock: Clock, calls: Calls) -> DailyScheduler:
    """A scheduler whose send records the call and stores the issue as sent."""

    async def send(day: date) -> None:
        calls.append((clock(), day))
        issue = store.get_issue(settings.name, day) or store.create_issue(
            settings.name, day, issue_cutoff(settings, day), DIGEST, clock()
        )
        store.set_issue_status(issue.id, IssueStatus.SENT, clock())

    return DailyScheduler(settings, store, send, clock)


async def settle(schedule: DailyScheduler) -> None:
    """Let the wakeup run, its jobs start, and every started job finish."""
    for _ in range(3):
        await asyncio.sleep(0)
    while schedule.running:
        await asyncio.sleep(0.01)


async def drive(schedule: DailyScheduler, clock: Clock, until: datetime, step: timedelta) -> None:
    schedule.start()
    await settle(schedule)
    while clock.now < until:
        clock.now += step
        schedule.scheduler.wakeup()
        await settle(schedule)
    await schedule.stop(grace=1)


def run_days(
    settings: Settings, store: Store, clock: Clock, start: datetime, end: datetime
) -> Calls:
    calls: Calls = []
    clock.now = start
    asyncio.run(drive(recorder(settings, store, clock, calls), clock, end, timedelta(minutes=15)))
    return calls


@pytest.mark.parametrize(
    ("send_time", "start", "local_times"),
    [
        # Starting at 15:00 UTC, past the stale window: the first issue is the next day's.
        # Spring forward on 29 Mar: 07:00 stays 07:00 local; 01:30 does not exist that day.
        ("07:00", datetime(2026, 3, 27, 15, tzinfo=UTC), ["07:00", "07:00", "07:00", "07:00"]),
        ("01:30", datetime(2026, 3, 27, 15, tzinfo=UTC), ["01:30", "02:30", "01:30", "01:30"]),
        # Fall back on 25 Oct: 01:30 happens twice that night and must fire once.
        ("07:00", datetime(2026, 10, 23, 15, tzinfo=UTC), ["07:00", "07:00", "07:00", "07:00"]),
        ("01:30", datetime(2026, 10, 23, 15, tzinfo=UTC), ["01:30", "01:30", "01:30", "01:30"]),
    ],
)
def test_fires_once_a_day_at_the_local_send_time_across_dst(
    tmp_path: Path,
    store: SqlStore,
    clock: Clock,
    send_time: str,
    start: datetime,
    local_times: list[str],
) -> None:
    settings = settings_for(tmp_path, send_time)
    calls = run_days(settings, store, clock, start, start + timedelta(days=4))
    first = start.date() + timedelta(days=1)
    days = [first + timedelta(days=n) for n in range(4)]
    assert [day for _, day in calls] == days  # one per date, none missed, none twice
    assert [at for at, _ in calls] == [issue_cutoff(settings, day) for day in days]
    assert [f"{at.astimezone(LONDON):%H:%M}" for at, _ in calls] == local_times


def test_the_trigger_gives_each_local_date_once_for_a_whole_year(tmp_path: Path) -> None:
    for send_time in ("00:30", "01:30", "07:00", "23:59"):
        settings = settings_for(tmp_path, send_time)
        trigger = DailyTrigger(settings)
        fire = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC))
        dates = []
        for _ in range(366):
            dates.append(fire.astimezone(LONDON).date())
            fire = trigger.get_next_fire_time(fire, fire)
        assert dates == [dates[0] + timedelta(days=n) for n in range(366)], send_time


@pytest.mark.parametrize(
    ("late", "sends"),
    [
        (timedelta(hours=2), True),
        (timedelta(hours=5, minutes=55), True),
        (timedelta(hours=7), False),
    ],
)
def test_a_restart_after_the_send_time_catches_up_only_within_the_stale_window(
    tmp_path: Path, store: SqlStore, clock: Clock, late: timedelta, sends: bool
) -> None:
    settings = settings_for(tmp_path)  # 07:00 London, stale_after_hours = 6
    day = date(2026, 11, 27)
    start = issue_cutoff(settings, day) + late
    calls = run_days(settings, store, clock, start, start + timedelta(hours=1))
    assert calls == ([(start, day)] if sends else [])


def test_a_restart_does_not_send_an_issue_already_sent(
    tmp_path: Path, store: SqlStore, clock: Clock
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    first = run_days(
        settings, store, clock, issue_cutoff(settings, day), issue_cutoff(settings, day)
    )
    again = issue_cutoff(settings, day) + timedelta(hours=1)
    assert first == [(issue_cutoff(settings, day), day)]
    assert run_days(settings, store, clock, again, again + timedelta(hours=2)) == []


def test_an_unfinished_issue_is_resumed_even_after_the_stale_window(
    tmp_path: Path, store: SqlStore, clock: Clock
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    store.create_issue(settings.name, day, issue_cutoff(settings, day), DIGEST, clock())
    start = issue_cutoff(settings, day) + timedelta(hours=8)
    calls = run_days(settings, store, clock, start, start + timedelta(hours=1))
    assert calls == [(start + timedelta(minutes=15), day)]  # the first sweep after start-up


@pytest.mark.parametrize(
    ("after", "stored", "send"),
    [
        (timedelta(minutes=1), None, True),
        (timedelta(hours=6, minutes=1), None, False),
        (timedelta(hours=1), IssueStatus.SENT, False),
        (timedelta(hours=23), IssueStatus.SENDING, True),  # retry deadline: 24 h after cutoff
    ],
)
def test_what_is_due(
    tmp_path: Path,
    store: SqlStore,
    after: timedelta,
    stored: IssueStatus | None,
    send: bool,
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    cutoff = issue_cutoff(settings, day)
    if stored is not None:
        issue = store.create_issue(settings.name, day, cutoff, DIGEST, cutoff)
        store.set_issue_status(issue.id, stored, cutoff)
    due = what_is_due(settings, store, cutoff + after)
    assert (due.issue_date, due.send, due.stored) == (day, send, stored is not None)


def test_deferred_readers_not_yet_due_leave_nothing_to_do(tmp_path: Path, store: SqlStore) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    cutoff = issue_cutoff(settings, day)
    issue = store.create_issue(settings.name, day, cutoff, DIGEST, cutoff)
    reader = store.add_subscriber("r@example.org", status=ACTIVE, source="t", now=cutoff)
    retry_at = cutoff + timedelta(hours=2)
    deferred = Outcome(DeliveryStatus.DEFERRED, "451 4.3.0 try later", next_attempt=retry_at)
    store.record_outcome(issue.id, reader.id, deferred, cutoff)
    assert not what_is_due(settings, store, cutoff + timedelta(hours=1)).send
    assert what_is_due(settings, store, retry_at).send


async def two_schedulers(settings: Settings, clock: Clock, reports: list[RunSummary]) -> None:
    """Two processes' worth of scheduler on one database, both starting after the send time."""
    schedules = []
    for _ in range(2):
        store = open_store(settings.database_url)
        transport = SmtpTransport(settings.smtp)
        sender = IssueSender(
            settings, store, transport, asyncio.Event(), report=reports.append, clock=clock
        )
        schedules.append(DailyScheduler(settings, store, sender, clock))
    for schedule in schedules:
        schedule.start()
    for schedule in schedules:
        await settle(schedule)
    for schedule in schedules:
        await schedule.stop(grace=1)
        assert isinstance(schedule.store, SqlStore)
        schedule.store.close()


def test_two_schedulers_on_one_database_mail_each_reader_once(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    readers = [f"reader{n}@example.org" for n in range(20)]
    with SmtpServer() as smtp:
        settings = settings_for(tmp_path, smtp_port=smtp.port)
        clock.now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # 07:00 London was an hour ago
        store = open_store(settings.database_url)
        for reader in readers:
            store.add_subscriber(reader, status=SubscriberStatus.ACTIVE, source="t", now=clock())
        reports: list[RunSummary] = []
        asyncio.run(two_schedulers(settings, clock, reports))
        issue = store.get_issue(settings.name, date(2026, 11, 28))
        store.close()
    assert len(reports) == 2  # both ran; one of them sent
    assert sorted(report.recipients for report in reports) == [0, len(readers)]
    assert Counter(m.rcpt_tos[0] for m in smtp.messages) == Counter(readers)
    assert issue is not None and issue.status is IssueStatus.SENT


def test_run_once_with_nothing_due_says_why_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    in_two_hours = datetime.now(UTC) + timedelta(hours=2)  # the last send time was 22 h ago
    swaps = {
        'timezone = "Europe/London"': 'timezone = "UTC"',
        'send_time = "07:00"': f'send_time = "{in_two_hours:%H:%M}"',
    }
    config = make_config(tmp_path, [("Sample", str(SAMPLE))], closed_port(), replace=swaps)
    assert main(["--config", str(config), "run", "--once"]) == 0
    out = capsys.readouterr().out
    assert "nothing to send: " in out and "beyond delivery.stale_after_hours (6.0 h)" in out


def test_run_serves_the_web_app_and_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    port = closed_port()
    config = make_config(
        tmp_path,
        [("Sample", str(SAMPLE))],
        closed_port(),
        replace={"port = 8000": f"port = {port}"},
    )
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
    command = [sys.executable, "-m", "newsletter", "--config", str(config), "run"]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        healthy = wait_for_health(f"http://127.0.0.1:{port}/healthz", process)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=10)
        stopped_in = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    log = (out + err).decode("utf-8", "replace")
    assert healthy, log
    assert process.returncode == 0 and stopped_in < 3, log
    assert "the issue goes out daily at 07:00 Europe/London" in log and "SIGTERM" in log


def wait_for_health(url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False
