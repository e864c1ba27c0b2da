"""Real processes: a send killed with SIGKILL resumes, and two sends at once mail everyone once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.smtp_server import SmtpServer
from tests.world import ISSUE_DATE, SECRET, World, deployment

CONNECTIONS = 2
AUDIENCE = [f"reader{n:03d}@example.org" for n in range(240)]


def world_on(
    tmp_path: Path, smtp: SmtpServer, database_url: str | None = None
) -> AbstractContextManager[World]:
    swaps = {"connections = 4 ": f"connections = {CONNECTIONS} "}
    return deployment(tmp_path, smtp, AUDIENCE, replace=swaps, database_url=database_url)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def copies(world: World) -> Counter[str]:
    return Counter(message.rcpt_tos[0] for message in world.smtp.messages)


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_sigkill_mid_send_then_rerun_loses_nobody(tmp_path: Path) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        smtp.handler.delay = 0.01
        process = world.spawn("--force", "--date", ISSUE_DATE)
        try:
            wait_for(lambda: len(smtp.messages) >= 60)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            assert process.stdout is not None and process.stderr is not None
            process.stdout.close()
            process.stderr.close()
        killed_at = len(smtp.messages)
        assert killed_at < len(AUDIENCE), "the kill came too late to test anything"
        smtp.handler.delay = 0.0
        assert world.send("--date", ISSUE_DATE) == 0
        received = copies(world)
        assert set(received) == set(AUDIENCE)
        doubled = sum(count - 1 for count in received.values())
        assert doubled <= CONNECTIONS, f"{doubled} duplicates, bound is {CONNECTIONS}"
        assert set(world.ledger().values()) == {"sent"}


def test_two_sends_at_once_mail_everyone_exactly_once(tmp_path: Path, store_url: str) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp, store_url) as world:
        smtp.handler.delay = 0.002
        first = world.spawn("--force", "--date", ISSUE_DATE)
        second = world.spawn("--force", "--date", ISSUE_DATE)
        outputs = [process.communicate(timeout=60) for process in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outputs
        assert copies(world) == Counter(AUDIENCE)
        said = b"".join(out + err for out, err in outputs)
        assert b"being sent by" in said or b"already sent" in said


def test_sigterm_mid_send_stops_promptly_with_a_consistent_ledger(tmp_path: Path) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        smtp.handler.delay = 0.01
        process = world.spawn("--force", "--date", ISSUE_DATE)
        wait_for(lambda: len(smtp.messages) >= 40)
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        out, err = process.communicate(timeout=20)
        assert time.monotonic() - stopped_at < 5, "SIGTERM took too long"
        assert process.returncode == 3, (out, err)
        assert b"stopped before the end" in out
        assert len(smtp.messages) < len(AUDIENCE)
        assert set(copies(world)) == set(world.ledger())  # every copy recorded, nothing more
        smtp.handler.delay = 0.0
        assert world.send("--date", ISSUE_DATE) == 0
        assert copies(world) == Counter(AUDIENCE)
