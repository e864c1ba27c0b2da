"""Versioned schema migrations: an ordered list of steps and a `schema_version` table.

Step N (1-based) brings the schema from version N-1 to N. Each step runs in its own transaction
together with the row that records it, under a lock (PostgreSQL: an advisory transaction lock;
SQLite: BEGIN IMMEDIATE), so two processes opening the store at once apply every step exactly
once and a failed step leaves the previous version intact.

Adding a migration: write ``def _vN_what(conn: Connection) -> None`` and append it to
`MIGRATIONS`; never edit or reorder a step that has shipped. New tables are defined in
`store_schema` and created by their step with ``table.create(conn)``. Beware that the version-1
step creates its tables from their *current* definitions, so on a fresh database a column added
to `store_schema` later already exists when its own step runs: such a step must check first
(``sa.inspect(conn).get_columns(...)``) and only then ``ALTER TABLE ... ADD COLUMN``. Keep steps
to portable DDL, or branch on ``conn.dialect.name``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import StoreError
from .store_engine import writer
from .store_schema import (
    consents,
    deliveries,
    feed_state,
    issue_articles,
    issues,
    schema_version,
    subscribers,
    suppressions,
)

Migration = Callable[[Connection], None]

# pg_advisory_xact_lock key: an arbitrary constant that other applications are unlikely to use.
_PG_LOCK_KEY = 0x5245_4544_4D49_4752  # "REEDMIGR"


def _v1_initial(conn: Connection) -> None:
    """Subscribers, issues and their articles, the delivery ledger and feed state."""
    for table in (subscribers, issues, issue_articles, deliveries, feed_state):
        table.create(conn)


def _v2_subscriptions(conn: Connection) -> None:
    """Consent records of double opt-in, and the keyed hashes of erased addresses."""
    for table in (consents, suppressions):
        table.create(conn)


MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_subscriptions)
LATEST = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The version recorded in the database; 0 for an empty database."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return conn.scalar(sa.select(sa.func.max(schema_version.c.version))) or 0


def migrate(engine: Engine) -> int:
    """Apply every pending step, one locked transaction each; return the version reached.

    Re-reading the version under the lock before each step is what makes concurrent opens safe:
    a process that waited for the lock sees the step already done and moves on.
    """
    while True:
        with _locked(engine) as conn:
            version = current_version(conn)
            _refuse_newer(version)
            if version == LATEST:
                return version
            MIGRATIONS[version](conn)
            applied = {"version": version + 1, "applied_at": datetime.now(UTC)}
            conn.execute(sa.insert(schema_version).values(applied))


def check_current(engine: Engine) -> None:
    """Refuse a database this program cannot use as-is, without changing it (read-only opens)."""
    with engine.connect() as conn:
        version = current_version(conn)
    _refuse_newer(version)
    if version < LATEST:
        raise StoreError(
            f"the store's schema is at version {version}, this program needs {LATEST}: "
            "run once without --dry-run to upgrade it"
        )


def _refuse_newer(version: int) -> None:
    """A newer program migrated this database; running old code on it could lose data."""
    if version > LATEST:
        raise StoreError(
            f"the store's schema is at version {version}, newer than this program knows "
            f"({LATEST}); upgrade the program"
        )


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the migration lock, with the version table in place."""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        schema_version.create(conn, checkfirst=True)
        yield conn
