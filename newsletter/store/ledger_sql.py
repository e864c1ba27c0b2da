"""The ledger write on the hot path: the same upsert, minus SQLAlchemy's per-call overhead.

`SqlStore.record_outcomes` costs ~130 us per message through SQLAlchemy's execution machinery,
more than building and sending the message (bench/send_bench.py, cProfile). During a send the
statement never changes, so it is compiled once with the store's own dialect and run on one
DBAPI connection held for the send; values go through the column types' own bind processors,
so the stored bytes are exactly what the SQLAlchemy path writes.

On PostgreSQL a group is one statement on an autocommit connection: every column one array,
unnested (`arrays.unnested`), so one round trip writes and commits the group. psycopg's
executemany inside a transaction took three (BEGIN, the rows, COMMIT), and each is the
client's CPU as well as the wait: bench/ledger_cost.py.

On SQLite the write lock is waited for here, in steps of 50 us to 2 ms, not by SQLite's busy
handler, whose first wait is a whole millisecond and whose next ones grow to 100 ms. With two
processes sending, a commit finds the other's lock held (for ~150 us) a few times in a hundred,
and each such wait froze the process's event loop for 1-5 ms: 0.5 s of a 12 s send (measured
with a probe around the write, two processes, 10,000 signed messages).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus, Outcome, storable
from newsletter.store.engine import BUSY_TIMEOUT_MS, upsert_statement
from newsletter.store.schema import deliveries

LEDGER_KEY = ("issue_id", "subscriber_id")
# A SENT ledger row is final; one object, so the cached upsert statement is reused.
NOT_SENT = deliveries.c.status != DeliveryStatus.SENT.value
FIRST_WAIT, LONGEST_WAIT = 50e-6, 2e-3  # seconds between tries for SQLite's write lock


def ledger_values(
    issue_id: int, subscriber_id: int, outcome: Outcome, now: datetime
) -> dict[str, object]:
    return {
        "issue_id": issue_id,
        "subscriber_id": subscriber_id,
        "status": outcome.status.value,
        "detail": storable(outcome.detail),
        "message_id": outcome.message_id,
        "attempts": outcome.attempts,
        "next_attempt": outcome.next_attempt,
        "updated_at": now,
    }


class LedgerSql:
    """Writes ledger rows for one issue on a connection held until `close`."""

    def __init__(
        self, engine: Engine, issue_id: int, *, lock_timeout: float = BUSY_TIMEOUT_MS / 1000
    ) -> None:
        self.engine = engine
        self.lock_timeout = lock_timeout
        self.issue_id = issue_id
        self.dialect = engine.dialect
        self.sqlite = self.dialect.name == "sqlite"
        columns = tuple(c.name for c in deliveries.columns)
        compiled = upsert_statement(
            self.dialect.name, deliveries, columns, LEDGER_KEY, NOT_SENT, arrays=not self.sqlite
        )
        self.compiled = compiled.compile(dialect=self.dialect)
        self.processors: list[tuple[str, Callable[[Any], Any] | None]] = [
            (c.name, c.type.bind_processor(self.dialect)) for c in deliveries.columns
        ]
        # What construct_params would add to every row (the WHERE's "sent"), worked out once:
        # it costs ~3 us a row, the larger part of building a row's parameters.
        every_row = self.compiled.construct_params(dict.fromkeys(columns))
        self.constants = {name: value for name, value in every_row.items() if name not in columns}
        self.order = self.compiled.positiontup  # the "?" order (SQLite); None: by name
        self.raw = engine.raw_connection()
        self.idle = threading.Lock()  # held by a write, so `close` can see one still running
        self.broken = False
        self.closing = self.given_back = False  # `close` asked; the connection went back
        self.off_loop = not self.sqlite  # ports.LedgerWrite: a server's commit is waited for
        if self.sqlite:  # `_begin` waits for the lock; SQLite's own wait is off meanwhile
            self._pragma("PRAGMA busy_timeout = 0")
        else:  # a statement is its own transaction: the group's commit needs no round trip
            self.raw.driver_connection.autocommit = True  # type: ignore[union-attr]

    def close(self) -> None:
        """Return the connection, or throw it away if a fault broke it (no reset on a corpse)
        or its settings cannot be put back (the pool's next user must get the engine's own).

        A write still running in the ledger's thread (a second Ctrl-C cut short the wait for
        it) keeps the connection until it ends, and gives it back then: closing it under the
        write could break the commit.
        """
        self.closing = True
        if not self.idle.acquire(blocking=False):
            return
        try:
            self._give_back()
        finally:
            self.idle.release()

    def _give_back(self) -> None:
        if self.given_back:
            return
        self.given_back = True
        if not self.broken:
            try:
                if self.sqlite:  # the pool's next user gets the engine's own wait back
                    self._pragma(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                else:  # and its transactions
                    self.raw.driver_connection.autocommit = False  # type: ignore[union-attr]
            except Exception:  # a connection mid-statement or gone: nobody gets it back
                self.broken = True
        with contextlib.suppress(Exception):
            if self.broken:
                self.raw.invalidate()
            else:
                self.raw.close()

    def _pragma(self, statement: str) -> None:
        cursor = self.raw.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    def _begin(self, cursor: Any) -> None:
        """BEGIN IMMEDIATE, trying again after short waits while another process writes.

        A timed Event wait, not time.sleep: Python 3.11 sleeps to an absolute monotonic
        deadline, which libfaketime (how tests and rehearsals set the date) garbles.
        """
        deadline = time.monotonic() + self.lock_timeout
        wait, pause = FIRST_WAIT, None  # the lock is nearly always free: no Event until it is not
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            pause = pause or threading.Event()
            pause.wait(wait)
            wait = min(wait * 2, LONGEST_WAIT)

    def _params(self, row: dict[str, Any]) -> Any:
        """One row's parameters (SQLite)."""
        params = {
            name: processor(row[name]) if processor else row[name]
            for name, processor in self.processors
        }
        params.update(self.constants)
        if self.order is not None:
            return [params[name] for name in self.order]
        return params

    def _arrays(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A group's parameters as one array a column (PostgreSQL)."""
        params: dict[str, Any] = {
            name: [processor(row[name]) for row in rows] if processor else [r[name] for r in rows]
            for name, processor in self.processors
        }
        params.update(self.constants)
        return params

    def __call__(self, rows: Sequence[tuple[int, Outcome]], now: datetime) -> None:
        with self.idle:
            try:
                self._write(rows, now)
            finally:
                if self.closing:  # `close` came while this write ran
                    self._give_back()

    def _write(self, rows: Sequence[tuple[int, Outcome]], now: datetime) -> None:
        if self.sqlite:  # built before the write: a fault of ours is not the store's
            values = [self._params(ledger_values(self.issue_id, s, o, now)) for s, o in rows]
        else:
            group = [ledger_values(self.issue_id, s, o, now) for s, o in one_per_reader(rows)]
            arrays = self._arrays(group)
        cursor = None
        try:
            cursor = self.raw.cursor()
            if self.sqlite:  # autocommit connection: our own write lock
                self._begin(cursor)
                cursor.executemany(self.compiled.string, values)
                cursor.execute("COMMIT")
            else:
                cursor.execute(self.compiled.string, arrays)
        except Exception as exc:  # the database's own error types: sqlite3 or psycopg
            self.broken = True
            with contextlib.suppress(Exception):  # a dead connection cannot roll back either
                self.raw.rollback()
            raise StoreError(f"the store failed while recording outcomes: {exc}") from exc
        except BaseException:
            with contextlib.suppress(Exception):
                self.raw.rollback()
            raise
        finally:
            if cursor is not None:
                with contextlib.suppress(Exception):
                    cursor.close()


def one_per_reader(rows: Sequence[tuple[int, Outcome]]) -> list[tuple[int, Outcome]]:
    """A group as one statement may write a reader's row once (ON CONFLICT DO UPDATE touches a
    row at most once a statement), so a reader's outcomes merge as one after another would
    land: the first SENT is final, else the last counts. In the group's order."""
    merged: dict[int, Outcome] = {}
    for subscriber_id, outcome in rows:
        kept = merged.get(subscriber_id)
        if kept is None or kept.status is not DeliveryStatus.SENT:
            merged[subscriber_id] = outcome
    return list(merged.items())
