"""Migrations through Alembic: recorded, all-or-nothing, once under concurrency, and an existing
store made before Alembic (schema_version 2) upgraded in place with its rows intact.

Every test runs on SQLite and on PostgreSQL (`store_url`).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.models import SubscriberStatus
from newsletter.store import SqlStore, migrate, open_store
from newsletter.store.schema import metadata

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def revision(store: SqlStore) -> str | None:
    with store.engine.connect() as conn:
        return migrate.current_revision(conn)


def tables(store: SqlStore) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_head_is_the_last_revision_in_the_script_directory() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(migrate.SCRIPTS)).get_current_head() == migrate.HEAD


def test_a_new_store_is_at_head_with_every_table(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert revision(store) == migrate.HEAD
        assert {table.name for table in metadata.sorted_tables} <= tables(store)
        assert "schema_version" not in tables(store)
    finally:
        store.close()


def test_the_revisions_build_what_schema_py_describes(store_url: str) -> None:
    """Alembic's comparison of the migrated database with the metadata finds no difference."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
        assert differences == []
    finally:
        store.close()


def test_reopening_changes_nothing(store_url: str) -> None:
    first = open_store(store_url)
    first.add_subscriber("ann@example.com", status=SubscriberStatus.ACTIVE, source="t", now=NOW)
    first.close()
    second = open_store(store_url)
    try:
        assert revision(second) == migrate.HEAD
        assert second.get_subscriber("ann@example.com") is not None
    finally:
        second.close()


def test_a_failing_revision_rolls_back_whole(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(store_url).close()
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPTS, scripts)
    (scripts / "versions" / "9999_broken.py").write_text(
        f'revision = "9999"\ndown_revision = "{migrate.HEAD}"\n'
        "branch_labels = None\ndepends_on = None\n\n"
        "import sqlalchemy as sa\nfrom alembic import op\n\n\n"
        "def upgrade() -> None:\n"
        '    op.create_table("half_done", sa.Column("x", sa.Integer))\n'
        '    raise RuntimeError("step failed")\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(migrate, "SCRIPTS", scripts)
    monkeypatch.setattr(migrate, "HEAD", "9999")
    with pytest.raises(RuntimeError, match="step failed"):
        open_store(store_url)
    monkeypatch.undo()
    store = open_store(store_url)
    try:
        assert revision(store) == migrate.HEAD
        assert "half_done" not in tables(store)
    finally:
        store.close()


def test_concurrent_opens_migrate_once(store_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[SqlStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(open_store(store_url))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with opened[0].engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert [row[0] for row in rows] == [migrate.HEAD]
    for store in opened:
        store.close()


# Each child imports, then blocks on its stdin until the test closes all three at once (no
# sleeping: under libfaketime, as in CI's second pass, a child's short sleeps can fail).
OPEN_WHEN_TOLD = """
import sys
from newsletter.store import open_store
sys.stdin.read()
open_store(sys.argv[1]).close()
"""


@pytest.mark.slow
def test_processes_opening_a_new_store_at_once_migrate_it_once(
    store_url: str, tmp_path: Path
) -> None:
    """Three processes (as three `newsletter send` of one cron minute) open an empty store at
    the same moment: each gets a store at HEAD, every step having run once (a step run twice
    fails on what the first made), and one version row."""
    started = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    time.sleep(1.0)  # each has imported Python and waits for the word
    for process in started:
        assert process.stdin is not None
        process.stdin.close()
        process.stdin = None  # closed: communicate() must not flush it
    for process in started:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert [row[0] for row in rows] == [migrate.HEAD]
    finally:
        store.close()


def test_a_newer_schema_is_refused(store_url: str) -> None:
    store = open_store(store_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="newer than this program"):
            open_store(store_url, read_only=read_only)


def load_legacy(store_url: str) -> None:
    """Restore the dump of a store made by main before Alembic into the test's database."""
    url = sa.make_url(store_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(url.database) as db:
            db.executescript((LEGACY / "store-v2.sqlite.sql").read_text(encoding="utf-8"))
        return
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    sql = (LEGACY / "store-v2.postgresql.sql").read_text(encoding="utf-8")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql.replace("{schema}", f'"{schema}"'))
    finally:
        engine.dispose()


def test_a_store_made_before_alembic_is_upgraded_in_place(store_url: str) -> None:
    load_legacy(store_url)
    with pytest.raises(StoreError, match="run once without --dry-run"):
        open_store(store_url, read_only=True)
    store = open_store(store_url)
    try:
        assert revision(store) == migrate.HEAD
        assert "schema_version" not in tables(store)
        ann = store.get_subscriber("ann@example.org")
        assert ann is not None and ann.status is SubscriberStatus.ACTIVE
        issue = store.get_issue("REE Daily", date(2026, 11, 27))
        assert issue is not None and issue.digest.article_ids == ("a1", "a2")
        assert store.outcome_counts(issue.id) == {"sent": 1}
        bob = store.export_subscriber("bob@example.org")
        assert bob is not None and len(bob["consents"]) == 1
        store.add_subscriber("new@example.org", status=SubscriberStatus.ACTIVE, source="t", now=NOW)
    finally:
        store.close()
    reopened = open_store(store_url, read_only=True)
    reopened.close()


def test_a_store_at_the_first_revision_gains_the_later_tables(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "HEAD", "0001")
        old = open_store(store_url)
        with old.engine.begin() as conn:  # as the code of that revision wrote it
            conn.execute(
                sa.text(
                    "INSERT INTO subscribers (email, status, source, created_at, updated_at) "
                    "VALUES ('kept@example.org', 'active', 't', :now, :now)"
                ),
                {"now": NOW.replace(tzinfo=None) if "sqlite" in store_url else NOW},
            )
        assert revision(old) == "0001" and "consents" not in tables(old)
        old.close()
    upgraded = open_store(store_url)
    try:
        assert revision(upgraded) == migrate.HEAD
        assert {"consents", "suppressions"} <= tables(upgraded)
        assert upgraded.get_subscriber("kept@example.org") is not None
    finally:
        upgraded.close()


def test_revision_0004_gives_existing_subscribers_public_ids_and_mailboxes(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows made before public ids get a distinct random one each, their mailbox, and keep
    their deliveries (a SQLite table rebuild would have cascaded them away)."""
    rows = [
        ("ann@example.org", "ann@example.org"),
        ("a.n.n+news@gmail.com", "ann@gmail.com"),
        ("bob+x@example.org", "bob@example.org"),
        ("+tag@example.org", "+tag@example.org"),
    ]
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "HEAD", "0002")
        old = open_store(store_url)
        with old.engine.begin() as conn:
            for email, _ in rows:
                conn.execute(
                    sa.text(
                        "INSERT INTO subscribers (email, status, created_at, updated_at)"
                        " VALUES (:email, 'active', :now, :now)"
                    ),
                    {"email": email, "now": NOW},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO issues (newsletter, issue_date, status, cutoff, subject,"
                    " preheader, html, text, created_at)"
                    " VALUES ('REE Daily', '2026-11-27', 'sent', :now, 's', 'p', 'h', 't', :now)"
                ),
                {"now": NOW},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at)"
                    " VALUES (1, 1, 'sent', :now)"
                ),
                {"now": NOW},
            )
        old.close()
    upgraded = open_store(store_url)
    try:
        with upgraded.engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT email, public_id, mailbox FROM subscribers ORDER BY id")
            ).all()
            kept = conn.scalar(sa.text("SELECT count(*) FROM deliveries"))
        assert [(row.email, row.mailbox) for row in found] == rows
        public_ids = [row.public_id for row in found]
        assert len(set(public_ids)) == 4
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", pid) for pid in public_ids)
        assert kept == 1
        ann = upgraded.get_subscriber_by_public_id(public_ids[0])
        assert ann is not None and ann.email == "ann@example.org"
        with pytest.raises(sa.exc.IntegrityError), upgraded.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE subscribers SET public_id = :p WHERE id = 2"), {"p": public_ids[0]}
            )
    finally:
        upgraded.close()
