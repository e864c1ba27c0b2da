"""The ledger's own wait for SQLite's write lock (`LedgerSql._begin`), against a real file.

Another process's transaction is played by a second connection that holds BEGIN IMMEDIATE; a
ledger write that meets it waits (in short steps, not SQLite's millisecond-and-more busy
handler) and then commits, or gives up after its timeout with the store's error; either way
the connection goes back to the pool with the engine's own busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus, Outcome
from newsletter.store import SqlStore, open_store
from newsletter.store.engine import BUSY_TIMEOUT_MS
from newsletter.store.ledger_sql import LedgerSql
from tests.support.clock import T0
from tests.support.lease_harness import issue_with_readers

SENT = Outcome(DeliveryStatus.SENT, "250 2.0.0 accepted")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        opened.close()


class Holder:
    """Another writer: holds SQLite's write lock until `release`."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def database(store: SqlStore) -> str:
    return str(store.engine.url.database)


def busy_timeout(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


def test_a_write_that_meets_another_writers_lock_waits_for_it_then_commits(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 2)
    session = LedgerSql(store.engine, issue_id, lock_timeout=30)
    holder = Holder(database(store))
    release = threading.Timer(0.3, holder.release)
    try:
        release.start()
        session([(ids[0], SENT), (ids[1], SENT)], T0)
    finally:
        release.join()
        session.close()
    assert store.outcome_counts(issue_id) == {"sent": 2}
    assert busy_timeout(store) == BUSY_TIMEOUT_MS


def test_a_lock_held_past_the_timeout_is_the_stores_error_and_nothing_is_written(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 1)
    session = LedgerSql(store.engine, issue_id, lock_timeout=0.2)
    holder = Holder(database(store))
    try:
        with pytest.raises(StoreError, match="database is locked"):
            session([(ids[0], SENT)], T0)
        assert session.broken
    finally:
        holder.release()
        session.close()
    assert store.outcome_counts(issue_id) == {}
    session = LedgerSql(store.engine, issue_id, lock_timeout=0.2)  # the lock is free again
    try:
        session([(ids[0], SENT)], T0)
    finally:
        session.close()
    assert store.outcome_counts(issue_id) == {"sent": 1}
    assert busy_timeout(store) == BUSY_TIMEOUT_MS


def test_the_sessions_connection_waits_by_itself_and_gives_the_pool_sqlites_wait_back(
    store: SqlStore,
) -> None:
    issue_id, _ = issue_with_readers(store, 1)
    session = LedgerSql(store.engine, issue_id)
    cursor = session.raw.cursor()
    assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == 0  # `_begin` does the waiting
    cursor.close()
    session.close()
    assert busy_timeout(store) == BUSY_TIMEOUT_MS
