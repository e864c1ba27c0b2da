"""The schedule tells the operator and never surprises the reader: `newsletter run --once`
from cron on a test clock, across a relay that is down for a day."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.models import IssueStatus
from newsletter.timing import issue_cutoff
from tests.support.config import closed_port
from tests.support.smtp_server import SmtpServer
from tests.support.world import SECRET, Deployment, deployment

READERS = [f"reader{n:02d}@example.org" for n in range(6)]
DAY1, DAY2 = date(2026, 11, 27), date(2026, 11, 28)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    swaps = {"connections = 4 ": "connections = 2 ", "timeout = 30 ": "timeout = 2 "}
    since = datetime(2026, 11, 20, tzinfo=UTC)  # the readers signed up the week before
    with (
        SmtpServer() as smtp,
        deployment(tmp_path, smtp, READERS, replace=swaps, since=since) as made,
    ):
        yield made


def run_once(world: Deployment, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--config", str(world.config), "run", "--once"], clock=world.clock)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def relay(world: Deployment, up: bool) -> None:
    text = world.config.read_text(encoding="utf-8")
    good, down = f"port = {world.smtp.port}\n", f"port = {DOWN}\n"
    world.config.write_text(text.replace(down, good) if up else text.replace(good, down))


DOWN = closed_port()


def at(world: Deployment, day: date, **after: float) -> None:
    settings = load_settings(world.config)
    world.clock.now = issue_cutoff(settings, day) + timedelta(**after)


def status(world: Deployment, day: date) -> IssueStatus | None:
    issue = world.store.get_issue(world.settings_name, day)
    return None if issue is None else issue.status


def test_a_relay_down_for_a_day_never_sends_the_old_issue_by_surprise(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    relay(world, up=False)
    at(world, DAY1, minutes=5)
    assert run_once(world, capsys)[0] == 4  # the relay refused: nothing went out
    day1 = world.store.get_issue(world.settings_name, DAY1)
    assert day1 is not None and day1.digest.article_ids
    at(world, DAY1, hours=6, minutes=30)  # past the stale window: held, and cron hears it
    code, said = run_once(world, capsys)
    assert code == 4 and "reached nobody" in said and f"--date {DAY1}" in said
    relay(world, up=True)
    at(world, DAY2, minutes=-10)  # 06:50 next morning, relay back: still not sent by surprise
    code, said = run_once(world, capsys)
    assert code == 4 and world.smtp.messages == []
    at(world, DAY2, minutes=5)  # the next issue goes out and carries the lost day's articles
    code, said = run_once(world, capsys)
    assert code == 0, said
    assert Counter(m.rcpt_tos[0] for m in world.smtp.messages) == Counter(READERS)
    assert status(world, DAY1) is IssueStatus.ABANDONED
    assert status(world, DAY2) is IssueStatus.SENT
    day2 = world.store.get_issue(world.settings_name, DAY2)
    assert day2 is not None
    assert set(day1.digest.article_ids) <= set(day2.digest.article_ids)
    assert "abandoned" in said


def test_a_deferred_reader_is_retried_when_the_next_issue_is_due(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(text.replace("retry_deadline_hours = 24", "retry_deadline_hours = 48"))
    victim = READERS[2]
    world.smtp.handler.behaviour = lambda at, rcpt: (
        "452 4.2.2 Mailbox full" if at == "rcpt" and rcpt == victim else None
    )
    at(world, DAY1, minutes=5)
    assert run_once(world, capsys)[0] == 3
    world.smtp.handler.behaviour = None
    at(world, DAY2, minutes=5)  # day 2 is due; day 1's deadline is another 24 h away
    code, said = run_once(world, capsys)
    assert code == 0, said
    got = Counter(m.rcpt_tos[0] for m in world.smtp.messages)
    assert got[victim] == 2 and all(got[r] == 2 for r in READERS)  # day 1 and day 2, once each
    assert status(world, DAY1) is IssueStatus.SENT and status(world, DAY2) is IssueStatus.SENT


def test_a_run_at_0655_reports_nothing_missed(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    at(world, DAY1, minutes=5)
    assert run_once(world, capsys)[0] == 0
    at(world, DAY2, minutes=-5)  # 06:55: the next send time is five minutes away
    code, said = run_once(world, capsys)
    assert code == 0 and "missed" not in said and "beyond" not in said
