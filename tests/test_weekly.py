"""Daily or weekly: readers who chose weekly get only the Saturday round-up of the week's top
stories, with the same guarantees as the daily issue (its own ledger, resume after a kill)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.lifecycle import plan
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import Frequency, IssueStatus
from newsletter.pipeline import Run, prepare_issue
from newsletter.timing import issue_cutoff
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment, deployment

SATURDAY = date.fromisoformat(ISSUE_DATE)  # 28 Nov 2026
WEEK = [SATURDAY - timedelta(days=n) for n in range(4, -1, -1)]  # Tue 24 .. Sat 28
DAILY = [f"daily{n}@example.org" for n in range(3)]
WEEKLY = [f"weekly{n:03d}@example.org" for n in range(120)]
ON = {"enabled = false\nweekday": 'enabled = true\nweekday = "saturday"\n#weekday'}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> Iterator[Deployment]:
    """SQLite and PostgreSQL, as for the daily issue."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    since = datetime(2026, 11, 20, tzinfo=UTC)
    swaps = {**ON, "connections = 4 ": "connections = 2 ", "batch_size = 500 ": "batch_size = 40 "}
    readers = DAILY + WEEKLY
    with (
        SmtpServer() as smtp,
        deployment(
            tmp_path, smtp, readers, replace=swaps, since=since, database_url=store_url
        ) as w,
    ):
        for address in WEEKLY:
            w.store.set_frequency(w.ids[address], Frequency.WEEKLY, since)
        yield w


def copies(world: Deployment) -> Counter[str]:
    return Counter(message.rcpt_tos[0] for message in world.smtp.messages)


def send_the_week(world: Deployment) -> None:
    settings = load_settings(world.config)
    for day in WEEK:
        world.clock.now = issue_cutoff(settings, day) + timedelta(minutes=5)
        assert world.send("--date", day.isoformat()) in (0,), day


def test_weekly_readers_get_only_the_round_up_and_daily_readers_only_the_dailies(
    world: Deployment,
) -> None:
    send_the_week(world)
    dailies = copies(world)
    assert set(dailies) == set(DAILY)  # nothing daily went to a weekly reader
    world.smtp.handler.messages.clear()
    assert world.send("--date", ISSUE_DATE, "--weekly") == 0
    got = copies(world)
    assert got == Counter(WEEKLY)  # one round-up each, none for the daily readers
    settings = load_settings(world.config)
    weekly = world.store.get_issue(settings.weekly.name, SATURDAY)
    assert weekly is not None and weekly.kind is Frequency.WEEKLY
    assert weekly.status is IssueStatus.SENT
    # "View in your browser" opens the round-up's own page, not the daily issue of that date.
    for part in (weekly.digest.html, weekly.digest.text):
        assert f"/archive/weekly/{ISSUE_DATE}" in part and f"/archive/{ISSUE_DATE}" not in part
        assert "the week&#39;s rare-earth news" in part or "the week's rare-earth news" in part
    daily = world.store.get_issue(settings.name, WEEK[-2])
    assert daily is not None and f"/archive/{WEEK[-2]}" in daily.digest.html
    assert "the day's rare-earth news" in daily.digest.text
    assert weekly.digest.subject.startswith(f"{settings.weekly.name}, 28 Nov 2026: ")
    leads = []
    for day in WEEK:
        issue = world.store.get_issue(settings.name, day)
        if issue is not None and issue.digest.article_ids:
            leads.append(issue.digest.article_ids[0])
    shown = weekly.digest.article_ids
    assert list(shown[: len(leads)]) == list(reversed(leads))  # the days' leads, newest first
    assert len(shown) <= settings.weekly.max_articles
    assert world.send("--date", ISSUE_DATE, "--weekly") == 0  # a rerun sends nothing new
    assert copies(world) == Counter(WEEKLY)


def test_status_json_shows_the_round_up_beside_the_dailies(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    send_the_week(world)
    assert world.send("--date", ISSUE_DATE, "--weekly") == 0
    capsys.readouterr()
    assert main(["--config", str(world.config), "status", "--json"], clock=world.clock) == 0
    issues = json.loads(capsys.readouterr().out)["issues"]
    weekly = [issue for issue in issues if issue["kind"] == "weekly"]
    assert [(i["date"], i["status"], i["ledger"]) for i in weekly] == [
        (ISSUE_DATE, "sent", {"sent": len(WEEKLY)})
    ]
    assert issues[0] == weekly[0]  # newest first, the round-up before that day's daily
    assert {i["kind"] for i in issues[1:]} == {"daily"}


def test_the_plan_sends_the_round_up_on_its_weekday_only(world: Deployment) -> None:
    settings = load_settings(world.config)
    friday = issue_cutoff(settings, SATURDAY - timedelta(days=1)) + timedelta(minutes=5)
    assert plan(settings, world.store, friday).sends == [
        (SATURDAY - timedelta(days=1), Frequency.DAILY)
    ]
    saturday = issue_cutoff(settings, SATURDAY) + timedelta(minutes=5)
    assert plan(settings, world.store, saturday).sends == [
        (SATURDAY, Frequency.DAILY),
        (SATURDAY, Frequency.WEEKLY),
    ]


def test_run_once_sends_both_on_saturday(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    send_the_week(world)
    world.smtp.handler.messages.clear()
    world.store.engine.dispose()
    command = ["--config", str(world.config), "run", "--once"]
    world.clock.now += timedelta(minutes=10)
    assert main(command, clock=world.clock) == 0, capsys.readouterr()
    assert copies(world) == Counter(WEEKLY)  # the daily of the 28th went out already


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_a_killed_round_up_resumes_and_reaches_every_weekly_reader_once(
    world: Deployment,
) -> None:
    send_the_week(world)
    world.smtp.handler.messages.clear()
    world.smtp.handler.delay = 0.01
    process = world.spawn("--force", "--date", ISSUE_DATE, "--weekly")
    try:
        wait_for(lambda: len(world.smtp.messages) >= 30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    assert len(world.smtp.messages) < len(WEEKLY)
    world.smtp.handler.delay = 0.0
    assert world.send("--date", ISSUE_DATE, "--weekly") == 0
    got = copies(world)
    assert set(got) == set(WEEKLY)
    assert sum(n - 1 for n in got.values()) <= 2  # at most one per connection of the killed run


@pytest.mark.slow
def test_sigterm_mid_round_up_stops_promptly_and_the_rerun_reaches_the_rest(
    world: Deployment,
) -> None:
    send_the_week(world)
    world.smtp.handler.messages.clear()
    world.smtp.handler.delay = 0.01
    process = world.spawn("--force", "--date", ISSUE_DATE, "--weekly")
    wait_for(lambda: len(world.smtp.messages) >= 30)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 3 and b"Traceback" not in err, (out, err)
    assert b"stopped before the end" in out
    assert set(copies(world)) == {a for a, s in world.ledger().items() if a in WEEKLY}
    world.smtp.handler.delay = 0.0
    assert world.send("--date", ISSUE_DATE, "--weekly") == 0
    assert copies(world) == Counter(WEEKLY)


@pytest.mark.slow
def test_two_processes_share_the_round_up_and_reach_every_weekly_reader_once(
    world: Deployment,
) -> None:
    send_the_week(world)
    world.smtp.handler.messages.clear()
    world.smtp.handler.delay = 0.01
    process = world.spawn("--force", "--date", ISSUE_DATE, "--weekly", "--processes", "2")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, (out, err)
    assert b"their exit statuses: 0, 0" in out
    assert copies(world) == Counter(WEEKLY)


def test_close_weekly_ends_the_round_up_and_counts_who_never_got_it(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    send_the_week(world)
    settings = load_settings(world.config)
    run = Run(settings, world.store, SmtpTransport(settings.smtp), world.clock)
    asyncio.run(prepare_issue(run, SATURDAY, Frequency.WEEKLY))  # made, then the process died
    capsys.readouterr()
    argv = ["--config", str(world.config), "close", "--date", ISSUE_DATE, "--weekly"]
    assert main(argv, clock=world.clock) == 0
    said = capsys.readouterr().out
    assert f"the weekly issue of {ISSUE_DATE} is now abandoned" in said
    assert f"{len(WEEKLY)} reader(s) never tried will not get it" in said
    weekly = world.store.get_issue(settings.weekly.name, SATURDAY)
    assert weekly is not None and weekly.status is IssueStatus.ABANDONED
    assert world.store.outcome_counts(weekly.id) == {"expired": len(WEEKLY)}
    daily = world.store.get_issue(settings.name, SATURDAY)
    assert daily is not None and daily.status is IssueStatus.SENT  # the daily is untouched
