"""Never lose a reader: the five ways whole issues were lost, each ending with every reader
reached exactly once (duplicates within the stated bound), on a test clock past the deadline.

1. every connection refused, relay back, `send --force --date D` after the deadline;
2. SIGTERM part-way past the deadline, immediate rerun;
3. SIGKILL part-way, rerun after the lease would have run out;
4. a kill between creating the issue and taking its lease;
5. the PostgreSQL connection terminated mid-send;
6. the SQLite store full mid-send (as on a full disk).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from collections import Counter
from contextlib import AbstractContextManager
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import IssueStatus
from newsletter.pipeline import Run, prepare_issue
from newsletter.store import engine as store_engine
from tests.support.config import closed_port
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment, deployment

CONNECTIONS = 2
AUDIENCE = [f"reader{n:03d}@example.org" for n in range(120)]
DAY = date.fromisoformat(ISSUE_DATE)
PAST_DEADLINE = timedelta(days=2)  # the retry deadline is 24 h after the send time


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def copies(world: Deployment) -> Counter[str]:
    return Counter(message.rcpt_tos[0] for message in world.smtp.messages)


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def send(world: Deployment, *args: str) -> int:
    """`newsletter send` without the --force that `Deployment.send` always adds."""
    return main(["--config", str(world.config), "send", *args], clock=world.clock)


def issue_status(world: Deployment) -> IssueStatus:
    issue = world.store.get_issue(world.settings_name, DAY)
    assert issue is not None
    return issue.status


def everyone_once(world: Deployment, duplicates: int = 0) -> None:
    received = copies(world)
    assert set(received) == set(AUDIENCE), set(AUDIENCE) - set(received)
    doubled = sum(count - 1 for count in received.values())
    assert doubled <= duplicates, f"{doubled} duplicates, bound is {duplicates}"
    assert set(world.ledger().values()) == {"sent"}
    assert issue_status(world) is IssueStatus.SENT


def world_on(
    tmp_path: Path, smtp: SmtpServer, database_url: str | None = None
) -> AbstractContextManager[Deployment]:
    swaps = {"connections = 4 ": f"connections = {CONNECTIONS} ", "timeout = 30 ": "timeout = 2 "}
    return deployment(tmp_path, smtp, AUDIENCE, replace=swaps, database_url=database_url)


def test_every_connection_refused_then_force_after_the_deadline_mails_everyone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        down = closed_port()
        good = f"port = {smtp.port}"
        world.config.write_text(world.config.read_text().replace(good, f"port = {down}"))
        assert send(world, "--date", ISSUE_DATE) == 4
        assert smtp.messages == [] and world.ledger() == {}
        world.config.write_text(world.config.read_text().replace(f"port = {down}", good))
        world.clock.advance(PAST_DEADLINE)
        capsys.readouterr()
        assert send(world, "--date", ISSUE_DATE) == 4  # not by surprise: the operator decides
        err = capsys.readouterr().err
        assert f"newsletter send --force --date {ISSUE_DATE}" in err and smtp.messages == []
        assert world.send("--date", ISSUE_DATE) == 0
        everyone_once(world)
        assert world.send("--date", ISSUE_DATE) == 0  # a rerun of a sent issue: nothing, 0
        assert "already sent" in capsys.readouterr().out
        everyone_once(world)


@pytest.mark.slow
def test_sigterm_past_the_deadline_then_an_immediate_rerun_mails_everyone(tmp_path: Path) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        world.clock.advance(PAST_DEADLINE)
        smtp.handler.delay = 0.01
        process = world.spawn("--force", "--date", ISSUE_DATE)
        wait_for(lambda: len(smtp.messages) >= 30)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 3 and b"Traceback" not in err, (out, err)
        assert len(smtp.messages) < len(AUDIENCE)
        smtp.handler.delay = 0.0
        assert world.send("--date", ISSUE_DATE) == 0
        everyone_once(world)


@pytest.mark.slow
def test_sigkill_then_a_rerun_after_the_lease_mails_everyone(tmp_path: Path) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        world.clock.advance(PAST_DEADLINE)
        smtp.handler.delay = 0.01
        process = world.spawn("--force", "--date", ISSUE_DATE)
        try:
            wait_for(lambda: len(smtp.messages) >= 30)
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        assert len(smtp.messages) < len(AUDIENCE)
        smtp.handler.delay = 0.0
        world.clock.advance(minutes=2)  # the lease (60 s) has run out
        assert world.send("--date", ISSUE_DATE) == 0
        everyone_once(world, duplicates=CONNECTIONS)


def test_a_kill_between_creating_the_issue_and_taking_its_lease_loses_nobody(
    tmp_path: Path,
) -> None:
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        settings = load_settings(world.config)
        run = Run(settings, world.store, SmtpTransport(settings.smtp), world.clock)
        created, _ = asyncio.run(prepare_issue(run, DAY))  # ... and the process dies here
        assert created is not None and world.ledger() == {}
        world.clock.advance(PAST_DEADLINE)
        assert send(world, "--date", ISSUE_DATE) == 4  # held: it reached nobody in its window
        assert world.send("--date", ISSUE_DATE) == 0
        everyone_once(world)


def test_a_full_sqlite_store_mid_send_stops_cleanly_and_the_rerun_mails_everyone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite refusing to grow ("database or disk is full", as on a full disk) part-way through
    the send: one line, the summary, exit 3, no traceback; the next run sends to the rest."""
    with SmtpServer() as smtp, world_on(tmp_path, smtp) as world:
        settings = load_settings(world.config)
        run = Run(settings, world.store, SmtpTransport(settings.smtp), world.clock)
        asyncio.run(prepare_issue(run, DAY))  # the issue is made; the send below resumes it
        database = Path(world.store.engine.url.database or "")
        with sqlite3.connect(database) as probe:
            limit = probe.execute("PRAGMA page_count").fetchone()[0] + 3  # ~12 KB of room
        real = store_engine.file_engine

        def nearly_full(url: sa.URL, *, read_only: bool) -> sa.Engine:
            engine = real(url, read_only=read_only)
            sa.event.listen(
                engine,
                "connect",
                lambda connection, _: connection.execute(f"PRAGMA max_page_count = {limit}"),
            )
            return engine

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store_engine, "file_engine", nearly_full)
            code = send(world, "--date", ISSUE_DATE)
        out, err = capsys.readouterr()
        assert code == 3 and "Traceback" not in out + err, (out, err)
        assert "database or disk is full" in out + err
        recorded = len(world.ledger())
        assert 0 < recorded < len(AUDIENCE)
        # The summary says how far it got, and how many it did not reach, truthfully.
        assert f"outcomes: sent={recorded}\n" in out, out
        assert f"issue: sending, {len(AUDIENCE) - recorded} reader(s) not reached" in out, out
        assert send(world, "--date", ISSUE_DATE) == 0
        everyone_once(world, duplicates=CONNECTIONS)


@pytest.mark.slow
def test_a_server_that_cannot_give_the_ledger_a_connection_stops_the_send_before_any_mail(
    tmp_path: Path, store_url: str
) -> None:
    """The ledger's connection is opened before the first message: a role at its connection
    limit stops the send with the store's error and nothing sent, so nobody is left sent but
    unrecorded; with the limit lifted the rerun mails everyone once."""
    if not store_url.startswith("postgresql"):
        pytest.skip("a server's connection limit is a PostgreSQL case")
    role = f"ree_limited_{uuid.uuid4().hex[:8]}"
    url = sa.make_url(store_url)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1"))
    try:
        with SmtpServer() as smtp, world_on(tmp_path, smtp, database_url=store_url) as world:
            with admin.connect() as conn:
                for grant in ("USAGE ON SCHEMA", "ALL ON ALL TABLES IN SCHEMA",
                              "ALL ON ALL SEQUENCES IN SCHEMA"):  # fmt: skip
                    conn.execute(sa.text(f"GRANT {grant} {schema_of(url)} TO {role}"))
            plain = url.render_as_string(hide_password=False)
            limited = url.set(username=role).render_as_string(hide_password=False)
            world.config.write_text(world.config.read_text().replace(plain, limited))
            process = world.spawn("--date", ISSUE_DATE)
            out, err = process.communicate(timeout=60)
            assert process.returncode == 3 and b"Traceback" not in err, (out, err)
            assert b"the store failed" in out + err
            assert smtp.messages == [] and world.ledger() == {}
            with admin.connect() as conn:
                conn.execute(sa.text(f"ALTER ROLE {role} CONNECTION LIMIT -1"))
            assert send(world, "--date", ISSUE_DATE) == 0
            everyone_once(world)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def schema_of(url: sa.URL) -> str:
    """The throwaway schema a test URL's search path names."""
    options = str(url.query["options"])
    return options.split("search_path=", 1)[1]


@pytest.mark.slow
def test_a_terminated_postgresql_connection_stops_cleanly_and_the_rerun_mails_everyone(
    tmp_path: Path, store_url: str
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("terminating a server connection is a PostgreSQL case")
    tagged = str(sa.make_url(store_url).update_query_dict({"application_name": "ree-victim"}))
    url = tagged.replace("***", "")  # no password on the test server
    with SmtpServer() as smtp, world_on(tmp_path, smtp, database_url=url) as world:
        smtp.handler.delay = 0.01
        process = world.spawn("--date", ISSUE_DATE)
        wait_for(lambda: len(smtp.messages) >= 30)
        admin = sa.create_engine(store_url)
        with admin.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'ree-victim'"
                )
            ).all()
        admin.dispose()
        out, err = process.communicate(timeout=60)
        assert killed, "no connection of the sender was found"
        assert process.returncode in (3, 4) and b"Traceback" not in err, (out, err)
        assert b"the store failed" in out + err
        smtp.handler.delay = 0.0
        assert world.send("--date", ISSUE_DATE) == 0
        everyone_once(world, duplicates=CONNECTIONS)
