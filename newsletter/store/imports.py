"""Bulk import: a chunk of addresses in one transaction (a mixin of SqlStore).

Row by row an import cost ~6 ms an address (a transaction and four statements each: 610 s for
100,000 on SQLite). Here a chunk costs two set-wise reads, one INSERT ... ON CONFLICT DO NOTHING
and at most one UPDATE, whatever its size. The insert takes the columns that vary (address,
public id, mailbox) as one VALUES list on SQLite and as one array a column on PostgreSQL, and
the rest once (`_insert`); PostgreSQL's reads take arrays too (`any_of`): psycopg re-parses a
statement of thousands of placeholders on every chunk, and that was half of an import's time
there.

The rules are `add_subscriber`'s (`status_after_add`): an erased address (its keyed hash on the
list) is refused first, an unsubscribed or bounced one is kept as it is, a pending one becomes
active only when asked; a line repeating an address is judged against what the earlier line
made of it.

On PostgreSQL the known rows are read FOR UPDATE, so an unsubscribe landing between the read
and the update waits for the import instead of being overwritten by it; another writer may
still insert an address between the read and the insert: the conflict clause leaves its row
alone and that address is read again and judged like any known one. On SQLite the write
transaction (BEGIN IMMEDIATE) keeps other writers out from the start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.models import ImportResult, ImportRow, ImportVerdict, SubscriberStatus
from newsletter.store.arrays import any_of, unnested
from newsletter.store.engine import dialect_insert
from newsletter.store.schema import subscribers, suppressions
from newsletter.store.subscribers import (
    new_subscriber_values,
    status_after_add,
    status_values,
    suppression_reason,
)

ERASED = "erased on request; only a new sign-up can return"


class ImportMixin:
    engine: Engine

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def import_subscribers(
        self, rows: Sequence[ImportRow], *, status: SubscriberStatus, source: str, now: datetime
    ) -> list[ImportVerdict]:
        """Add a chunk of addresses with `status`; one verdict per row, in order.

        The caller bounds the chunk (SQLite allows 32,766 bound values a statement).
        """
        with self._write("import_subscribers") as conn:
            erased = _erased(conn, {value for row in rows for value in row.hashes})
            kept = [row for row in rows if erased.isdisjoint(row.hashes)]
            stored = _stored(conn, {row.email for row in kept})
            fresh = [row for row in kept if row.email not in stored]
            new = _insert(conn, fresh, status, source, now)
            lost = {row.email for row in fresh} - new
            if lost:  # another writer added them meanwhile: judge them as known ones
                stored.update(_stored(conn, lost))
            verdicts, confirmed = _judge(rows, erased, stored, new, status)
            if confirmed:
                _activate(conn, confirmed, now)
        return verdicts


def _erased(conn: Connection, hashes: set[str]) -> set[str]:
    if not hashes:
        return set()
    match = any_of(conn.dialect.name, suppressions.c.address_hash, list(hashes))
    return set(conn.scalars(sa.select(suppressions.c.address_hash).where(match)))


def _stored(conn: Connection, emails: Iterable[str]) -> dict[str, sa.Row[Any]]:
    wanted = list(emails)
    if not wanted:
        return {}
    match = any_of(conn.dialect.name, subscribers.c.email, wanted)
    query = sa.select(subscribers).where(match).with_for_update()
    return {row.email: row for row in conn.execute(query)}


def _insert(
    conn: Connection,
    rows: Sequence[ImportRow],
    status: SubscriberStatus,
    source: str,
    now: datetime,
) -> set[str]:
    """Insert the first row of every address; return the addresses this statement inserted."""
    if not rows:
        return set()
    values: dict[str, dict[str, Any]] = {}
    for row in rows:
        values.setdefault(
            row.email, new_subscriber_values(row.email, status, source, now, row.mailbox)
        )
    # Every row has the same columns (one status, so the same lifecycle stamps), and most
    # have one value for the whole chunk (status, source, the stamps): those go once. The
    # rest go as one array a column (PostgreSQL, unnested) or as one VALUES list (SQLite), in
    # the file's order, so ids follow the file.
    first = next(iter(values.values()))
    same = {
        name: value
        for name, value in first.items()
        if name != "email" and all(row[name] == value for row in values.values())
    }
    names = [name for name in first if name not in same]
    columns = [[row[name] for row in values.values()] for name in names]
    if conn.dialect.name == "sqlite":
        return _insert_listed(conn, names, columns, same)
    rows_in = unnested(subscribers, names, columns, constants=same)
    insert = dialect_insert(conn.dialect.name, subscribers)
    insert = insert.from_select([*names, *same], rows_in, include_defaults=False)
    statement = insert.on_conflict_do_nothing(index_elements=["email"])
    return set(conn.scalars(statement.returning(subscribers.c.email)))


def _insert_listed(
    conn: Connection, names: list[str], columns: list[list[Any]], same: dict[str, Any]
) -> set[str]:
    """SQLite's insert: the rows as one VALUES list, written as SQLite spells it (columns
    column1, column2, ...) and run as it is. Built by SQLAlchemy, a VALUES list of 3,000 values
    is compiled anew on every chunk (100,000 lines took 24.9 s instead of 13.5), and bound row
    by row each constant went through its type's processing on every row (three time stamps a
    row, a quarter of the import); here the constants are processed once. The WHERE is what
    SQLite asks of an INSERT ... SELECT with an ON CONFLICT clause, which would otherwise parse
    as a join's ON."""
    dialect = conn.dialect
    constants = []
    for name, value in same.items():
        process = subscribers.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        constants.append(process(value) if process else value)
    row = "(" + ", ".join(["?"] * len(names)) + ")"
    slots = ", ".join([*(f"column{n}" for n in range(1, len(names) + 1)), *["?"] * len(same)])
    sql = (
        f"INSERT INTO {subscribers.name} ({', '.join([*names, *same])}) SELECT {slots} "
        f"FROM (VALUES {', '.join([row] * len(columns[0]))}) WHERE true "
        "ON CONFLICT (email) DO NOTHING RETURNING email"
    )
    flat = [value for values in zip(*columns, strict=True) for value in values]
    return set(conn.exec_driver_sql(sql, (*constants, *flat)).scalars())


def _judge(
    rows: Sequence[ImportRow],
    erased: set[str],
    stored: dict[str, sa.Row[Any]],
    new: set[str],
    status: SubscriberStatus,
) -> tuple[list[ImportVerdict], list[int]]:
    """Each row's verdict in file order, and the ids of pending rows to make active."""
    state = {email: SubscriberStatus(row.status) for email, row in stored.items()}
    verdicts: list[ImportVerdict] = []
    confirmed: list[int] = []
    for row in rows:
        if not erased.isdisjoint(row.hashes):
            verdicts.append(ImportVerdict(ImportResult.SUPPRESSED, ERASED))
            continue
        if row.email not in state:  # only an address this chunk inserted
            assert row.email in new
            state[row.email] = status
            verdicts.append(ImportVerdict(ImportResult.ADDED))
            continue
        existing = state[row.email]
        after = status_after_add(existing, status)
        if after is None:
            reason = suppression_reason(stored[row.email])
            verdicts.append(ImportVerdict(ImportResult.SUPPRESSED, reason))
        elif after is existing:
            verdicts.append(ImportVerdict(ImportResult.UNCHANGED))
        else:
            state[row.email] = after
            confirmed.append(stored[row.email].id)
            verdicts.append(ImportVerdict(ImportResult.UPDATED))
    return verdicts, confirmed


def _activate(conn: Connection, ids: list[int], now: datetime) -> None:
    """Pending to active, as `change_status` does it (the rows are locked since `_stored`)."""
    conn.execute(
        sa.update(subscribers)
        .where(any_of(conn.dialect.name, subscribers.c.id, ids))
        .values(status_values(SubscriberStatus.ACTIVE, now))
    )
