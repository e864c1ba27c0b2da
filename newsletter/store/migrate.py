"""Schema migrations through Alembic, run by the store itself when it opens.

Every open checks the database's revision against `HEAD` with one query; only when they differ
is Alembic imported and run (`send` starts faster for it). The upgrade runs in one write
transaction that holds a lock (PostgreSQL: an advisory transaction lock; SQLite: BEGIN
IMMEDIATE), so two processes opening the store at once apply each revision exactly once and a
failed revision leaves the previous one intact.

Stores made before Alembic kept their version in a `schema_version` table (1 or 2); they are
adopted in place: stamped with the matching revision, the old table dropped, then upgraded.

Adding a migration: a new file in `migrations/versions/` (copy `script.py.mako`'s shape), its
`down_revision` the current head, tables and columns written out in full (never read from
`schema.py`, which describes the newest schema), portable DDL or a branch on the dialect; then
bump `HEAD`. A test checks `HEAD` against the script directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.errors import StoreError
from newsletter.store.engine import writer

HEAD = "0011"
SCRIPTS = Path(__file__).with_name("migrations")
# The pre-Alembic version table and which revision each of its versions equals.
LEGACY_TABLE = "schema_version"
LEGACY_REVISIONS = {1: "0001", 2: "0002"}
# pg_advisory_xact_lock key: an arbitrary constant that other applications are unlikely to use.
_PG_LOCK_KEY = 0x5245_4544_4D49_4752  # "REEDMIGR"


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at; None for an empty database."""
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version"):
        found = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        return str(found) if found is not None else None
    if inspector.has_table(LEGACY_TABLE):
        version = conn.scalar(sa.text(f"SELECT max(version) FROM {LEGACY_TABLE}")) or 0
        if version not in LEGACY_REVISIONS:
            _refuse_unknown(f"version {version}")
        return LEGACY_REVISIONS[version]
    return None


def migrate(engine: Engine) -> str:
    """Bring the database to `HEAD`; return the revision reached."""
    with engine.connect() as conn:
        if _at_head(conn):
            return HEAD
    with _locked(engine) as conn:  # re-read under the lock: another process may have done it
        revision = current_revision(conn)
        if revision == HEAD and not _legacy(conn):
            return HEAD
        _check_known(revision)
        _upgrade(conn, revision)
    return HEAD


def check_current(engine: Engine) -> None:
    """Refuse a database this program cannot use as-is, without changing it (read-only opens)."""
    with engine.connect() as conn:
        revision = current_revision(conn)
        legacy = _legacy(conn)
    if revision == HEAD and not legacy:
        return  # the common case, without loading Alembic (~0.16 s of `status` and a dry run)
    _check_known(revision)
    if revision != HEAD or legacy:
        raise StoreError(
            f"the store's schema is at revision {revision or 'none'}, this program needs {HEAD}: "
            "run once without --dry-run to upgrade it"
        )


def _at_head(conn: Connection) -> bool:
    if not sa.inspect(conn).has_table("alembic_version"):
        return False
    return bool(conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == HEAD)


def _legacy(conn: Connection) -> bool:
    return sa.inspect(conn).has_table(LEGACY_TABLE)


def _check_known(revision: str | None) -> None:
    if revision is not None and revision not in _known_revisions():
        _refuse_unknown(f"revision {revision}")


def _refuse_unknown(what: str) -> None:
    """A newer program migrated this database; running old code on it could lose data."""
    raise StoreError(
        f"the store's schema is at {what}, newer than this program knows ({HEAD}); "
        "upgrade the program"
    )


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory(str(SCRIPTS)).walk_revisions()}


def _upgrade(conn: Connection, revision: str | None) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    if _legacy(conn):
        assert revision is not None  # current_revision read it from the legacy table
        command.stamp(config, revision)
        conn.execute(sa.text(f"DROP TABLE {LEGACY_TABLE}"))
    command.upgrade(config, HEAD)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A write transaction holding the migration lock."""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        yield conn
