"""Engines for the store: the per-database settings that make SQLite and PostgreSQL behave alike.

SQLite needs the most care. Python's sqlite3 module (before 3.16) only opens a transaction before
INSERT/UPDATE/DELETE, so DDL and SELECTs would run outside one; we switch that off and emit BEGIN
ourselves (SQLAlchemy's documented recipe). A write transaction begins with BEGIN IMMEDIATE so
it takes the write lock up front and waits on the busy timeout, instead of failing with
"database is locked" when it upgrades from reading to writing while another process writes.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

from newsletter.errors import StoreError
from newsletter.store.arrays import unnested

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

# Execution option asking the SQLite "begin" hook for BEGIN IMMEDIATE; ignored by PostgreSQL.
BEGIN_IMMEDIATE = "ree_begin_immediate"
BUSY_TIMEOUT_MS = 30_000
SUPPORTED = ("sqlite", "postgresql")


def parse_url(url: str) -> URL:
    """Parse and check a store URL; a bare ``postgresql://`` means psycopg 3, the driver we ship."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() not in SUPPORTED:
        backend = parsed.get_backend_name()
        raise StoreError(f"unsupported database {backend!r}; use sqlite or postgresql")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


# Faults of the database itself (gone, read-only, disk full), as opposed to refused statements
# (IntegrityError), which the store turns into its own answers where they happen.
FAULTS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.InternalError)


def _as_store_error(context: sa.engine.ExceptionContext) -> StoreError | None:
    """Every database fault reaches the store's caller as one StoreError: one line, no traceback.

    The pool's pre-ping must see the driver's own error to recognise a dead connection and
    reconnect, so that one is left alone.
    """
    if context.is_pre_ping:
        return None
    if isinstance(context.sqlalchemy_exception, FAULTS):
        return StoreError(f"the store failed: {context.original_exception}")
    return None


def _install_fault_hook(engine: Engine) -> Engine:
    sa.event.listen(engine, "handle_error", _as_store_error)
    return engine


def memory_engine() -> Engine:
    """One shared in-memory SQLite database (StaticPool: every checkout sees the same data)."""
    engine = sa.create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    _install_sqlite_hooks(engine, wal=False)
    return _install_fault_hook(engine)


def file_engine(url: URL, *, read_only: bool) -> Engine:
    """An engine for a SQLite file or a PostgreSQL server.

    Read-only engines are refused writes by the database itself too (SQLite ``mode=ro``,
    PostgreSQL read-only transactions), so a dry run cannot change anything even by mistake.
    """
    path = sqlite_path(url)
    if path is None:
        options: dict[str, Any] = {"postgresql_readonly": True} if read_only else {}
        engine = sa.create_engine(url, pool_pre_ping=True, execution_options=options)
        return _install_fault_hook(engine)
    if read_only:
        uri = path.resolve().as_uri()
        url = url.set(database=uri, query={"mode": "ro", "uri": "true"})
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's folder {path.parent}: {exc}") from None
    engine = sa.create_engine(url)
    _install_sqlite_hooks(engine, wal=not read_only)
    return _install_fault_hook(engine)


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    """Per-connection pragmas and our own BEGIN, as the module docstring explains."""

    def on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # In WAL mode NORMAL still survives a killed process (what resume depends on); only a
        # power cut or OS crash may lose the last commits. FULL would fsync every ledger row,
        # which costs ~250 us per message here.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()
        if wal:
            _enable_wal(dbapi_connection)

    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(BEGIN_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", on_begin)


def _enable_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging (readers and the writer stop blocking each other).

    The switch is needed once per file, but it is the one statement for which SQLite answers
    "database is locked" without waiting on the busy timeout, so two processes creating the
    database together would fail; we wait for the other one ourselves.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
        if mode is not None and str(mode[0]).lower() == "wal":
            return
        try:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            # A timed wait, not time.sleep: Python 3.11 sleeps to an absolute monotonic
            # deadline, which libfaketime (how tests and rehearsals set the date) garbles.
            threading.Event().wait(0.02)


def writer(engine: Engine) -> Engine:
    """The same engine, but its transactions take SQLite's write lock at BEGIN."""
    return engine.execution_options(**{BEGIN_IMMEDIATE: True})


def upsert(
    conn: Connection,
    table: sa.Table,
    values: dict[str, Any],
    keys: tuple[str, ...],
    *,
    where: sa.ColumnElement[bool] | None = None,
) -> None:
    """Insert `values`, or update the row with the same `keys` (only where `where` holds).

    One atomic statement (ON CONFLICT ... DO UPDATE, same syntax on both databases), so two
    writers never race between a failed insert and the update that should follow it. The
    statement is built once per shape and the values are bound at execution: building it per
    call cost ~1 ms, more than sending the message whose outcome it records.
    """
    upsert_many(conn, table, [values], keys, where=where)


def upsert_many(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    keys: tuple[str, ...],
    *,
    where: sa.ColumnElement[bool] | None = None,
) -> None:
    """`upsert` for several rows of the same columns, as one executemany."""
    statement = upsert_statement(conn.dialect.name, table, tuple(rows[0]), keys, where)
    conn.execute(statement, list(rows))


def raw_column(engine: Engine, statement: sa.Select[Any], params: dict[str, Any]) -> list[Any]:
    """The first column of `statement`'s rows, run straight on a pooled DBAPI connection.

    For a query on a send's hot path: SQLAlchemy's per-call statement building, cache lookup and
    result objects cost ~4x the query (`active_ids`, every 32 readers: 580 us against 140 on
    SQLite). The statement is compiled once per dialect, and SQLAlchemy's own compiler fills
    its expanding IN lists per call, so the SQL is what SQLAlchemy would send. Values pass
    unprocessed: only for columns whose types need no bind processing (integers, text).

    Any error of the database, reaching it included, is a StoreError (for a fixed query every
    one is a fault, so refusals are not told apart as `FAULTS` does for the engine's path). A
    server's connection it happened on is thrown away, not rolled back and pooled: one the
    server dropped would fail its reset with a logged traceback (`LedgerSql` does the same). A
    SQLite connection is kept (in a dry run's in-memory store it is the whole database).
    """
    compiled = _compiled(statement, engine.dialect)
    state = compiled.construct_expanded_state(params)
    values = state.positional_parameters if compiled.positional else state.parameters
    try:
        raw = engine.raw_connection()
    except Exception as exc:  # the driver's own types: the server is down, the file is missing
        raise StoreError(f"the store failed: {exc}") from exc
    try:
        cursor = raw.cursor()
        cursor.execute(state.statement, values)
        rows = cursor.fetchall()
        cursor.close()
    except Exception as exc:
        if engine.dialect.name != "sqlite":
            raw.invalidate(exc)
        raise StoreError(f"the store failed: {exc}") from exc
    finally:
        raw.close()
    return [row[0] for row in rows]


@functools.lru_cache(maxsize=16)
def _compiled(statement: sa.Select[Any], dialect: sa.Dialect) -> SQLCompiler:
    return statement.compile(dialect=dialect)


def dialect_insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can take ON CONFLICT, for the store's two dialects. Each dialect's module
    loads when first asked for: PostgreSQL's is ~40 ms of a SQLite command's start-up."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


@functools.lru_cache(maxsize=64)
def upsert_statement(
    dialect: str,
    table: sa.Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    where: sa.ColumnElement[bool] | None,
    *,
    arrays: bool = False,
) -> sa.Insert:
    """The upsert of `upsert_many`; with `arrays` (PostgreSQL) its rows come from one array
    parameter a column (`unnested`), so one execution writes them all."""
    insert = dialect_insert(dialect, table)
    if arrays:
        insert = insert.from_select(columns, unnested(table, columns), include_defaults=False)
    changes = {name: insert.excluded[name] for name in columns if name not in keys}
    return insert.on_conflict_do_update(index_elements=keys, set_=changes, where=where)
