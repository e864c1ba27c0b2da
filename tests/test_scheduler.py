"""The scheduler: the right local time across DST, one issue per date, catch-up only within the
stale window, and `newsletter run` as a process that serves the web app and stops on SIGTERM.

APScheduler is driven by a test clock: its modules read `datetime.now`, which the `clock`
fixture replaces, and each step calls `wakeup()` as its timer would. No test waits in real time
for a send time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
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

from newsletter.cli.main import main
from newsletter.cli.run import IssueSender
from newsletter.config import Settings, load_settings
from newsletter.lifecycle import plan
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import (
    DeliveryStatus,
    Digest,
    Frequency,
    IssueStatus,
    Outcome,
    RunSummary,
    SubscriberStatus,
)
from newsletter.ports import Store
from newsletter.scheduler import DailyScheduler, DailyTrigger, IssueRunner
from newsletter.store import SqlStore, open_store
from newsletter.timing import issue_cutoff
from tests.support.clock import T0, FakeClock
from tests.support.config import ROOT, SAMPLE, closed_port, make_config
from tests.support.faketime import wall_clock_env
from tests.support.smtp_server import SmtpServer
from tests.support.world import SECRET

LONDON = ZoneInfo("Europe/London")
ACTIVE = SubscriberStatus.ACTIVE
DIGEST = Digest("subject", "preheader", "<p>html</p>", "text", ())
Calls = list[tuple[datetime, date]]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """One clock for our code and APScheduler's scheduler and executor."""
    fake = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))

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


def recorder(settings: Settings, store: Store, clock: FakeClock, calls: Calls) -> DailyScheduler:
    """A scheduler whose send records the call and stores the issue as sent."""

    async def send(day: date, kind: Frequency) -> None:
        assert kind is Frequency.DAILY  # [weekly] is off in these tests
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


async def drive(
    schedule: DailyScheduler, clock: FakeClock, until: datetime, step: timedelta
) -> None:
    schedule.start()
    await settle(schedule)
    while clock.now < until:
        clock.now += step
        schedule.scheduler.wakeup()
        await settle(schedule)
    await schedule.stop(grace=1)


def run_days(
    settings: Settings, store: Store, clock: FakeClock, start: datetime, end: datetime
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
    clock: FakeClock,
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
    tmp_path: Path, store: SqlStore, clock: FakeClock, late: timedelta, sends: bool
) -> None:
    settings = settings_for(tmp_path)  # 07:00 London, stale_after_hours = 6
    day = date(2026, 11, 27)
    start = issue_cutoff(settings, day) + late
    calls = run_days(settings, store, clock, start, start + timedelta(hours=1))
    assert calls == ([(start, day)] if sends else [])


def test_a_restart_does_not_send_an_issue_already_sent(
    tmp_path: Path, store: SqlStore, clock: FakeClock
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    first = run_days(
        settings, store, clock, issue_cutoff(settings, day), issue_cutoff(settings, day)
    )
    again = issue_cutoff(settings, day) + timedelta(hours=1)
    assert first == [(issue_cutoff(settings, day), day)]
    assert run_days(settings, store, clock, again, again + timedelta(hours=2)) == []


def reached_one(store: Store, settings: Settings, day: date, clock: FakeClock) -> None:
    """An unfinished issue of `day` that reached one reader and has one more to go."""
    issue = store.create_issue(settings.name, day, issue_cutoff(settings, day), DIGEST, clock())
    first = store.add_subscriber("first@example.org", status=ACTIVE, source="t", now=clock())
    store.add_subscriber("second@example.org", status=ACTIVE, source="t", now=clock())
    store.record_outcome(issue.id, first.id, Outcome(DeliveryStatus.SENT, "250 ok"), clock())


def test_an_issue_that_reached_someone_is_resumed_even_after_the_stale_window(
    tmp_path: Path, store: SqlStore, clock: FakeClock
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    clock.now = issue_cutoff(settings, day)
    reached_one(store, settings, day, clock)
    start = issue_cutoff(settings, day) + timedelta(hours=8)
    calls = run_days(settings, store, clock, start, start + timedelta(hours=1))
    assert calls == [(start, day)]  # the plan runs at start-up


def test_an_issue_that_reached_nobody_is_held_after_the_stale_window(
    tmp_path: Path, store: SqlStore, clock: FakeClock
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    clock.now = issue_cutoff(settings, day)
    store.create_issue(settings.name, day, clock.now, DIGEST, clock.now)
    store.add_subscriber("waiting@example.org", status=ACTIVE, source="t", now=clock.now)
    start = issue_cutoff(settings, day) + timedelta(hours=8)
    assert run_days(settings, store, clock, start, start + timedelta(hours=1)) == []
    alerts = plan(settings, store, start).alerts
    assert len(alerts) == 1 and "reached nobody" in alerts[0]
    assert f"newsletter send --force --date {day}" in alerts[0]


STALE_CASES = [
    (timedelta(minutes=1), None, True, 0),
    (timedelta(hours=6, minutes=1), None, False, 1),  # missed: the operator hears of it
    (timedelta(hours=1), IssueStatus.SENT, False, 0),
    (timedelta(hours=23), IssueStatus.SENDING, True, 0),  # reached someone; deadline is 24 h
    (timedelta(hours=25), IssueStatus.SENDING, False, 1),  # past the deadline, one never tried
]


def test_the_long_running_scheduler_started_at_0655_warns_of_nothing(
    tmp_path: Path, store: SqlStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """`newsletter run` started five minutes before the send time, yesterday's issue sent: no
    warning or alert (APScheduler's "missed by" included), and today's issue once, when due."""
    settings = settings_for(tmp_path)
    yesterday, today = date(2026, 11, 27), date(2026, 11, 28)
    made = issue_cutoff(settings, yesterday)
    sent = store.create_issue(settings.name, yesterday, made, DIGEST, made)
    store.set_issue_status(sent.id, IssueStatus.SENT, made + timedelta(minutes=5))
    start = issue_cutoff(settings, today) - timedelta(minutes=5)
    with caplog.at_level(logging.INFO):
        calls = run_days(settings, store, clock, start, start + timedelta(minutes=40))
    [(at, day)] = calls  # the clock moves in 15-minute steps: the first after 07:00
    assert day == today and timedelta(0) <= at - issue_cutoff(settings, today) < timedelta(
        minutes=15
    )
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], loud


def test_weekly_readers_left_without_any_issue_are_an_alert(
    tmp_path: Path, store: SqlStore
) -> None:
    """[weekly] off (as shipped) while readers chose it: each run says so and exits 4, since
    such a reader gets neither the round-up nor the dailies."""
    settings = settings_for(tmp_path)
    assert not settings.weekly.enabled
    now = issue_cutoff(settings, date(2026, 11, 27))
    store.add_subscriber("daily@example.org", status=ACTIVE, source="t", now=now)
    assert not any("weekly" in alert for alert in plan(settings, store, now).alerts)
    chose = store.add_subscriber("weekly@example.org", status=ACTIVE, source="t", now=now)
    store.set_frequency(chose.id, Frequency.WEEKLY, now)
    alerts = [alert for alert in plan(settings, store, now).alerts if "weekly" in alert]
    assert alerts == [
        "1 reader(s) chose the weekly round-up, but [weekly] is off, so they get no issue at "
        "all: turn [weekly] on again (enabled = true)"
    ]
    store.set_status(chose.id, SubscriberStatus.UNSUBSCRIBED, now)  # only active readers count
    assert not any("weekly" in alert for alert in plan(settings, store, now).alerts)


@pytest.mark.parametrize(("after", "stored", "sends", "alerts"), STALE_CASES)
def test_the_plan(
    tmp_path: Path,
    store: SqlStore,
    clock: FakeClock,
    after: timedelta,
    stored: IssueStatus | None,
    sends: bool,
    alerts: int,
) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    clock.now = issue_cutoff(settings, day)
    if stored is not None:
        reached_one(store, settings, day, clock)
        issue = store.get_issue(settings.name, day)
        assert issue is not None
        store.set_issue_status(issue.id, stored, clock.now)
    made = plan(settings, store, clock.now + after)
    assert ((day, Frequency.DAILY) in made.sends) == sends and len(made.alerts) == alerts, made


def test_deferred_readers_not_yet_due_leave_nothing_to_do(tmp_path: Path, store: SqlStore) -> None:
    settings = settings_for(tmp_path)
    day = date(2026, 11, 27)
    cutoff = issue_cutoff(settings, day)
    issue = store.create_issue(settings.name, day, cutoff, DIGEST, cutoff)
    reader = store.add_subscriber("r@example.org", status=ACTIVE, source="t", now=cutoff)
    retry_at = cutoff + timedelta(hours=2)
    deferred = Outcome(DeliveryStatus.DEFERRED, "451 4.3.0 try later", next_attempt=retry_at)
    store.record_outcome(issue.id, reader.id, deferred, cutoff)
    assert plan(settings, store, cutoff + timedelta(hours=1)).sends == []
    assert plan(settings, store, retry_at).sends == [(day, Frequency.DAILY)]


def test_every_unfinished_issue_is_resumed_until_its_own_deadline(
    tmp_path: Path, store: SqlStore
) -> None:
    """With a 48 h deadline, day 1's deferred reader is still retried when day 2 is due."""
    settings = settings_for(tmp_path)
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, retry_deadline_hours=48)
    )
    day1, day2 = date(2026, 11, 27), date(2026, 11, 28)
    cutoff = issue_cutoff(settings, day1)
    issue = store.create_issue(settings.name, day1, cutoff, DIGEST, cutoff)
    sent = store.add_subscriber("sent@example.org", status=ACTIVE, source="t", now=cutoff)
    later = store.add_subscriber("later@example.org", status=ACTIVE, source="t", now=cutoff)
    store.record_outcome(issue.id, sent.id, Outcome(DeliveryStatus.SENT, "250 ok"), cutoff)
    retry = cutoff + timedelta(hours=1)
    deferred = Outcome(DeliveryStatus.DEFERRED, "451 later", next_attempt=retry)
    store.record_outcome(issue.id, later.id, deferred, cutoff)
    made = plan(settings, store, issue_cutoff(settings, day2) + timedelta(minutes=5))
    assert made.sends == [(day1, Frequency.DAILY), (day2, Frequency.DAILY)] and made.alerts == []


def reported(sender: IssueSender, reports: list[RunSummary]) -> IssueRunner[RunSummary]:
    """The sender, keeping each run's summary for the test to read."""

    async def run(issue_date: date, kind: Frequency) -> RunSummary:
        summary = await sender(issue_date, kind)
        reports.append(summary)
        return summary

    return run


async def two_schedulers(settings: Settings, clock: FakeClock, reports: list[RunSummary]) -> None:
    """Two processes' worth of scheduler on one database, both starting after the send time."""
    schedules = []
    for _ in range(2):
        store = open_store(settings.database_url)
        transport = SmtpTransport(settings.smtp)
        sender = IssueSender(settings, store, transport, clock, asyncio.Event())
        schedules.append(DailyScheduler(settings, store, reported(sender, reports), clock))
    for schedule in schedules:
        schedule.start()
    for schedule in schedules:
        await settle(schedule)
    for schedule in schedules:
        await schedule.stop(grace=1)
        assert isinstance(schedule.store, SqlStore)
        schedule.store.close()


def test_two_schedulers_on_one_database_mail_each_reader_once(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
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


def test_a_missed_day_alerts_until_the_operator_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    clock = FakeClock(T0)
    in_two_hours = T0 + timedelta(hours=2)  # the last send time was 22 h ago
    swaps = {
        'timezone = "Europe/London"': 'timezone = "UTC"',
        'send_time = "07:00"': f'send_time = "{in_two_hours:%H:%M}"',
    }
    config = make_config(tmp_path, [("Sample", str(SAMPLE))], closed_port(), replace=swaps)
    missed = (T0 - timedelta(hours=22)).date()
    assert main(["--config", str(config), "run", "--once"], clock=clock) == 4
    err = capsys.readouterr().err
    assert (
        "needs the operator: " in err and "22 h ago, beyond delivery.stale_after_hours (6 h)" in err
    )
    assert f"newsletter close --date {missed}" in err and "next issue covers" in err
    clock.advance(minutes=10)
    assert main(["--config", str(config), "run", "--once"], clock=clock) == 4  # still not acted
    capsys.readouterr()
    assert main(["--config", str(config), "close", "--date", str(missed)], clock=clock) == 0
    assert "abandoned" in capsys.readouterr().out
    assert main(["--config", str(config), "run", "--once"], clock=clock) == 0
    assert "nothing to send: " in capsys.readouterr().out


@pytest.mark.slow
def test_run_serves_the_web_app_and_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    port = closed_port()
    config = make_config(
        tmp_path,
        [("Sample", str(SAMPLE))],
        closed_port(),
        replace={"port = 8000": f"port = {port}"},
    )
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET, **wall_clock_env(T0)}
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
