"""The ledger write on the hot path: the same upsert, minus SQLAlchemy's per-call overhead.

`SqlStore.record_outcomes` costs ~130 us per message through SQLAlchemy's execution machinery,
more than building and sending the message (bench/send_bench.py, cProfile). During a send the
statement never changes, so it is compiled once with the store's own dialect and run on one
DBAPI connection held for the send; values go through the column types' own bind processors,
so the stored bytes are exactly what the SQLAlchemy path writes.

On PostgreSQL a group is one statement on an autocommit connection: every column one array,
unnested (`arrays.unnested`), so one round trip writes and commits the group. psycopg's
executemany inside a transaction took three (BEGIN, the rows, COMMIT), and each is the
client's CPU as well as the wait: bench/ledger_cost.py. The connection is psycopg's asyncio
one, the send's own (opened as the session starts, before the first message; closed as it
ends): the statement is awaited on the event loop, which goes on sending (`ledger_writer`'s
docstring has the figures).

On SQLite the write lock is waited for here, in steps of 50 us to 2 ms, not by SQLite's busy
handler, whose first wait is a whole millisecond and whose next ones grow to 100 ms. With two
processes sending, a commit finds the other's lock held (for ~150 us) a few times in a hundred,
and each such wait froze the process's event loop for 1-5 ms: 0.5 s of a 12 s send (measured
with a probe around the write, two processes, 10,000 signed messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
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
# Seconds a forced stop still waits for a PostgreSQL statement under way before cancelling it:
# less than the scheduler's grace for a stopping send (`scheduler.SHUTDOWN_GRACE`, 20 s).
LINGER = 10.0


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
    """Writes ledger rows for one issue on a connection held until `aclose`."""

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
        self.broken = False
        self.raw: Any = None  # SQLite: a pooled DBAPI connection, held for the send
        self.server: Any = None  # PostgreSQL: psycopg's AsyncConnection, opened by `open`
        self.statement: asyncio.Task[None] | None = None  # PostgreSQL: the group under way
        if self.sqlite:  # `_begin` waits for the lock; SQLite's own wait is off meanwhile
            self.raw = engine.raw_connection()
            _pragma(self.raw, "PRAGMA busy_timeout = 0")

    async def open(self) -> None:
        """PostgreSQL: the session's own connection, before the send's first message. A server
        that cannot give one (down, at its connection limit) stops the send here, not at the
        first commit, when every connection's first message would already be out unrecorded."""
        if not self.sqlite and self.server is None:
            try:
                self.server = await _connect(self.engine)
            except Exception as exc:  # psycopg's own error types
                raise StoreError(f"the store failed: {exc}") from exc

    async def aclose(self) -> None:
        """End the session. A statement still under way (a forced stop cut its waiter short)
        ends first: the server's connection is not closed under it, not even when this wait
        is cancelled too (`_let_finish`); that cancellation is raised once it is closed."""
        interrupted = False
        try:
            if self.statement is not None:
                interrupted = await _let_finish(self.statement)
                if not self.statement.cancelled():
                    self.statement.exception()  # seen: whoever still waited was told
        finally:
            if self.server is not None:
                await self.server.close()
            self.close()
        if interrupted:
            raise asyncio.CancelledError

    def close(self) -> None:
        """Return the SQLite connection, or throw it away if a fault broke it (no reset on a
        corpse) or its wait cannot be put back (the pool's next user must get the engine's).
        A PostgreSQL session has its own connection, closed by `aclose`."""
        if self.raw is None:
            return
        raw, self.raw = self.raw, None
        if not self.broken:
            try:
                _pragma(raw, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except Exception:  # a connection mid-statement or gone: nobody gets it back
                self.broken = True
        with contextlib.suppress(Exception):
            if self.broken:
                raw.invalidate()
            else:
                raw.close()

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

    def __call__(
        self, rows: Sequence[tuple[int, Outcome]], now: datetime
    ) -> Awaitable[None] | None:
        """SQLite: the group committed on return. PostgreSQL: an awaitable of its commit; the
        statement runs as a task of its own, so a waiter cancelled (a forced stop) does not
        cut it off mid-way, and `aclose` waits for it."""
        if self.sqlite:
            self._write_here(rows, now)
            return None
        group = [ledger_values(self.issue_id, s, o, now) for s, o in one_per_reader(rows)]
        arrays = self._arrays(group)  # built before the write: a fault of ours is not the store's
        self.statement = asyncio.ensure_future(self._execute(arrays))
        return asyncio.shield(self.statement)

    def _write_here(self, rows: Sequence[tuple[int, Outcome]], now: datetime) -> None:
        values = [self._params(ledger_values(self.issue_id, s, o, now)) for s, o in rows]
        cursor = None
        try:
            cursor = self.raw.cursor()  # autocommit connection: our own write lock
            self._begin(cursor)
            cursor.executemany(self.compiled.string, values)
            cursor.execute("COMMIT")
        except Exception as exc:  # sqlite3's own error types
            self.broken = True
            with contextlib.suppress(Exception):
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

    async def _execute(self, arrays: dict[str, Any]) -> None:
        try:
            if self.server is None:  # a session used without `open` (a bench, say)
                self.server = await _connect(self.engine)
            await self.server.execute(self.compiled.string, arrays)
        except Exception as exc:  # psycopg's own error types, and a refused connection
            raise StoreError(f"the store failed while recording outcomes: {exc}") from exc


async def _let_finish(statement: asyncio.Task[None]) -> bool:
    """Wait for the statement; True if this wait was cancelled meanwhile. After a
    cancellation it waits at most LINGER seconds more, then cancels the statement (psycopg
    cancels the query on the server) and waits for that: a hung server cannot hold a forced
    stop for ever, and the connection is never closed under a running statement."""
    loop = asyncio.get_running_loop()
    interrupted, deadline = False, None  # the deadline: set by the first cancellation
    while not statement.done():
        timeout = None if deadline is None else deadline - loop.time()
        if timeout is not None and timeout <= 0:
            statement.cancel()  # then wait, without a limit, for psycopg to wind it down
            timeout = deadline = None
        try:
            await asyncio.wait([statement], timeout=timeout)
        except asyncio.CancelledError:
            interrupted = True
            deadline = deadline or loop.time() + LINGER
    return interrupted


def _pragma(raw: Any, statement: str) -> None:
    cursor = raw.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


async def _connect(engine: Engine) -> Any:
    """An autocommit asyncio connection to the engine's server, with the engine's own
    connection arguments (host, database, options such as the search path)."""
    import psycopg  # the PostgreSQL driver; a SQLite store never loads it

    args, kwargs = engine.dialect.create_connect_args(engine.url)
    return await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs)


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
