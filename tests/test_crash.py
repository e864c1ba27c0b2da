"""Real processes: a send killed with SIGKILL resumes, and two sends at once mail everyone once."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment, deployment

CONNECTIONS = 2
AUDIENCE = [f"reader{n:03d}@example.org" for n in range(240)]

pytestmark = pytest.mark.slow  # real processes (or a browser): `make test-fast` skips them


def world_on(
    tmp_path: Path, smtp: SmtpServer, database_url: str | None = None
) -> AbstractContextManager[Deployment]:
    swaps = {
        "connections = 4 ": f"connections = {CONNECTIONS} ",
        "batch_size = 500 ": "batch_size = 20 ",  # 12 batches: every process sends, and
        # the round is planned in two goes (lease.PLAN_AHEAD at a time)
    }
    return deployment(tmp_path, smtp, AUDIENCE, replace=swaps, database_url=database_url)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def copies(world: Deployment) -> Counter[str]:
    return Counter(message.rcpt_tos[0] for message in world.smtp.messages)


def everyone_reached_within_the_bound(world: Deployment) -> None:
    """Every reader has a copy, at most one per connection twice (the stated duplicate bound:
    copies on the wire when a process died), and the ledger says sent for all."""
    received = copies(world)
    assert set(received) == set(AUDIENCE)
    doubled = sum(count - 1 for count in received.values())
    assert doubled <= CONNECTIONS, f"{doubled} duplicates, bound is {CONNECTIONS}"
    assert set(world.ledger().values()) == {"sent"}


def freeze_between_transactions(process: subprocess.Popen[bytes], store: sa.Engine) -> None:
    """SIGSTOP `process` at a moment it is in no transaction. Frozen inside one it would hold
    SQLite's write lock (or PostgreSQL's row locks) and stop every other process: not a live
    holder of a batch, which is what the freeze stands for, but a store nobody can write to.
    One CI run in many met that on SQLite (the survivor got nothing out in 60 s)."""
    for _ in range(200):
        process.send_signal(signal.SIGSTOP)
        if not in_a_transaction(store):
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.003)
    raise AssertionError("the process was never caught between transactions")


def in_a_transaction(store: sa.Engine) -> bool:
    """Whether another connection holds a transaction open (here only the frozen process)."""
    if store.dialect.name == "sqlite":
        probe = sqlite3.connect(str(store.url.database), timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")  # the write lock: free unless someone holds it
            probe.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with store.connect() as conn:
        return bool(conn.scalar(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND datname = current_database() AND xact_start IS NOT NULL"
            " AND backend_type = 'client backend'"
        )))  # fmt: skip


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
        everyone_reached_within_the_bound(world)


def test_a_process_done_with_its_batches_waits_and_takes_over_a_dead_holders_batch(
    tmp_path: Path, store_url: str
) -> None:
    """The order CI once met: the survivor runs out of batches while the victim still holds
    one, and only then does the victim die. SIGSTOP pins that order: the frozen victim is alive
    and its lease is live, so the survivor must stay and wait rather than exit, and take the
    batch over the moment the victim is gone."""
    with SmtpServer() as smtp, world_on(tmp_path, smtp, store_url) as world:
        smtp.handler.delay = 0.01
        victim = world.spawn("--force", "--date", ISSUE_DATE)
        try:
            wait_for(lambda: len(smtp.messages) >= 10)
            freeze_between_transactions(victim, world.store.engine)  # holds a batch, lease live
            frozen_at = len(smtp.messages)
            survivor = world.spawn("--force", "--date", ISSUE_DATE)
            # everything but the victim's batch goes out, and the survivor does not leave
            wait_for(lambda: len(smtp.messages) >= frozen_at + len(AUDIENCE) - 40, timeout=60)
            time.sleep(1.5)  # several of the survivor's looks at the victim's live lease
            assert survivor.poll() is None, survivor.communicate()
            missing = set(AUDIENCE) - set(copies(world))
            assert missing, "the victim's batch went out while it was frozen"
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=10)
        out, err = survivor.communicate(timeout=60)
        assert survivor.returncode == 0, (out, err)
        everyone_reached_within_the_bound(world)  # the dead victim's batch was taken over
        assert b"issue: sent, 0 reader(s) not reached" in out


def test_two_sends_at_once_mail_everyone_exactly_once(tmp_path: Path, store_url: str) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp, store_url) as world:
        smtp.handler.delay = 0.002
        first = world.spawn("--force", "--date", ISSUE_DATE)
        second = world.spawn("--force", "--date", ISSUE_DATE)
        outputs = [process.communicate(timeout=60) for process in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outputs
        assert copies(world) == Counter(AUDIENCE)
        said = b"".join(out for out, _ in outputs)
        assert said.count(b"issue: sent, 0 reader(s) not reached") >= 1


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


def test_three_processes_share_one_issue_and_mail_everyone_exactly_once(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp, store_url) as world:
        smtp.handler.delay = 0.02  # ~2.4 s of sending: the three start well within it
        process = world.spawn("--force", "--date", ISSUE_DATE, "--processes", "3")
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (out, err)
        assert b"their exit statuses: 0, 0, 0" in out
        assert copies(world) == Counter(AUDIENCE)
        assert set(world.ledger().values()) == {"sent"}
        counts = [int(n) for n in re.findall(rb"^recipients: (\d+)$", out, re.M)]
        assert len(counts) == 3 and sum(counts) == len(AUDIENCE)
        assert sum(1 for n in counts if n) >= 2, counts  # the work was shared
        # collected and rendered once, before the copies started; each copy resumed it
        assert len(world.feeds.hits("/feed/")) == 1
        assert re.findall(rb"^  feed ok      REE News: (\d+) entries$", out, re.M) == [b"18"]
        assert out.index(b"  feed ok") < out.index(b"recipients:")


def test_a_killed_process_among_several_loses_nobody(tmp_path: Path, store_url: str) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp, store_url) as world:
        smtp.handler.delay = 0.01
        victim = world.spawn("--force", "--date", ISSUE_DATE)
        survivor = world.spawn("--force", "--date", ISSUE_DATE)
        try:
            wait_for(lambda: len(smtp.messages) >= 50)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=10)
        out, err = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, (out, err)
        everyone_reached_within_the_bound(world)  # the victim's batch was taken over
