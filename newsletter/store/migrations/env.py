"""Alembic environment: runs on the connection `store.migrate` hands over, inside its lock.

`store.migrate` opens one write transaction holding the migration lock (PostgreSQL advisory
lock, SQLite BEGIN IMMEDIATE) and passes its connection in `config.attributes["connection"]`;
the revisions run inside that transaction, so a failed step leaves the previous revision intact
and two processes opening the store at once apply each step exactly once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from newsletter.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through newsletter.store.migrate, which holds the lock")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying the table
)
with context.begin_transaction():
    context.run_migrations()
