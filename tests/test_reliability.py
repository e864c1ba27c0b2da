"""Delivery you can trust: real relay failures end with the ledger and the sink agreeing."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import AuthResult

from newsletter.cli.main import main
from newsletter.models import IssueStatus, SubscriberStatus
from newsletter.store.schema import deliveries
from tests.support.smtp_server import DROP, STALL, SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment, deployment

READERS = [f"reader{n:02d}@example.org" for n in range(12)]


def world_on(
    tmp_path: Path, smtp: SmtpServer, replace: dict[str, str] | None = None
) -> AbstractContextManager[Deployment]:
    swaps = {"connections = 4 ": "connections = 2 ", "timeout = 30 ": "timeout = 1 "}
    swaps.update(replace or {})
    return deployment(tmp_path, smtp, READERS, replace=swaps)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def copies(world: Deployment) -> Counter[str]:
    return Counter(message.rcpt_tos[0] for message in world.smtp.messages)


def assert_agree(world: Deployment) -> None:
    """Every SENT row has exactly one copy in the sink and every copy has a SENT row."""
    sent = {address for address, status in world.ledger().items() if status == "sent"}
    received = copies(world)
    assert set(received) == sent
    assert all(count == 1 for count in received.values()), received


def once_for(address: str, phase: str, reply: str) -> Callable[[str, str], str | None]:
    """Misbehave for one address, the first time only."""
    done = threading.Event()

    def behaviour(at: str, rcpt: str) -> str | None:
        if at == phase and rcpt == address and not done.is_set():
            done.set()
            return reply
        return None

    return behaviour


def test_hard_bounce_marks_the_address_and_the_rest_go_out(tmp_path: Path) -> None:
    victim = READERS[3]
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        smtp.handler.behaviour = lambda at, rcpt: (
            "550 5.1.1 No such user" if at == "rcpt" and rcpt == victim else None
        )
        assert world.send("--date", ISSUE_DATE) == 3
        assert world.ledger()[victim] == "failed"
        assert world.status_of(victim) is SubscriberStatus.BOUNCED
        assert set(copies(world)) == set(READERS) - {victim}
        assert_agree(world)


def test_policy_rejection_is_failed_but_not_a_bounce(tmp_path: Path) -> None:
    victim = READERS[5]
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        smtp.handler.behaviour = lambda at, rcpt: (
            "550 5.7.1 Message rejected by policy" if at == "data" and rcpt == victim else None
        )
        assert world.send("--date", ISSUE_DATE) == 3
        assert world.ledger()[victim] == "failed"
        assert world.status_of(victim) is SubscriberStatus.ACTIVE
        assert_agree(world)


@pytest.mark.parametrize("reply", ["451 4.7.1 Greylisted", "452 4.2.2 Mailbox full", DROP, STALL])
def test_one_transient_failure_is_retried_in_the_run(tmp_path: Path, reply: str) -> None:
    victim = READERS[4]
    phase = "rcpt" if reply[0] == "4" else "data"
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        smtp.handler.behaviour = once_for(victim, phase, reply)
        assert world.send("--date", ISSUE_DATE) == 0
        assert copies(world) == Counter(READERS)
        assert set(world.ledger().values()) == {"sent"}
        assert_agree(world)


def test_persistent_4xx_is_deferred_then_sent_by_the_next_run(tmp_path: Path) -> None:
    victim = READERS[7]
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        smtp.handler.behaviour = lambda at, rcpt: (
            "452 4.2.2 Mailbox full" if at == "rcpt" and rcpt == victim else None
        )
        assert world.send("--date", ISSUE_DATE) == 3
        assert world.ledger()[victim] == "deferred"
        issue = world.store.get_issue(world.settings_name, _date())
        assert issue is not None and issue.status is IssueStatus.SENDING
        assert_agree(world)
        smtp.handler.behaviour = None
        world.store.engine.dispose()
        _make_retry_due(world)
        assert world.send("--date", ISSUE_DATE) == 0
        assert copies(world) == Counter(READERS)
        issue = world.store.get_issue(world.settings_name, _date())
        assert issue is not None and issue.status is IssueStatus.SENT
        assert_agree(world)


def _date() -> date:
    return date.fromisoformat(ISSUE_DATE)


def _make_retry_due(world: Deployment) -> None:
    """The deferred row's next attempt is 30 minutes away; move it to now instead of waiting."""
    with world.store.engine.begin() as conn:
        conn.execute(sa.update(deliveries).values(next_attempt=None))


def test_busy_server_stops_the_run_and_the_next_run_sends_everyone(tmp_path: Path) -> None:
    with SmtpServer(busy=True) as busy, world_on(tmp_path, busy) as world:
        assert world.send("--date", ISSUE_DATE) == 4
        assert world.ledger() == {}
        with SmtpServer() as good:
            text = world.config.read_text(encoding="utf-8")
            world.config.write_text(text.replace(f"port = {busy.port}", f"port = {good.port}"))
            world.smtp = good
            assert world.send("--date", ISSUE_DATE) == 0
            assert copies(world) == Counter(READERS)
            assert_agree(world)


def test_login_refused_stops_the_run_before_anyone_is_mailed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: object) -> AuthResult:
        return AuthResult(success=False, handled=False)

    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong")
    server = SmtpServer(authenticator=refuse, auth_require_tls=False)
    with server as smtp, world_on(tmp_path, smtp, {'username = ""': 'username = "ops"'}) as world:
        assert world.send("--date", ISSUE_DATE) == 4
        assert "login refused" in capsys.readouterr().err
        assert smtp.messages == [] and world.ledger() == {}


def test_stale_issue_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        code = main(["--config", str(world.config), "send", "--date", "2026-11-20"])
        assert code == 4
        assert "--force" in capsys.readouterr().err
        assert smtp.messages == []
        assert world.store.recent_issues(world.settings_name) == []


def test_unsubscribe_during_the_send_is_honoured(tmp_path: Path) -> None:
    """Recipients are re-checked in batches right before queueing: a late leaver is skipped."""
    one_connection = {"connections = 4 ": "connections = 1 "}
    with SmtpServer() as smtp, world_on(tmp_path, smtp, one_connection) as world:
        crowd = [f"crowd{n:03d}@example.org" for n in range(100)]
        for address in crowd:
            world.add(address)
        late = crowd[-1]
        smtp.handler.delay = 0.005

        def unsubscribe_late(at: str, rcpt: str) -> None:
            if rcpt == READERS[0] and at == "rcpt":
                now = datetime.now(UTC)
                world.store.set_status(world.ids[late], SubscriberStatus.UNSUBSCRIBED, now)

        smtp.handler.behaviour = unsubscribe_late
        assert world.send("--date", ISSUE_DATE) == 0
        assert late not in copies(world)
        assert world.ledger()[late] == "skipped"
        assert len(copies(world)) == len(READERS) + len(crowd) - 1
        assert_agree(world)
