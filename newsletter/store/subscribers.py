"""Subscriber queries for `store.SqlStore`, as functions of an open connection.

Split out of `store` to keep modules short; the store owns the transactions, these only run
statements inside them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from newsletter.errors import SuppressedAddressError
from newsletter.models import Subscriber, SubscriberStatus, new_public_id
from newsletter.store.schema import subscribers


def subscriber_row(conn: Connection, where: sa.ColumnElement[bool]) -> sa.Row[Any] | None:
    return conn.execute(sa.select(subscribers).where(where)).first()


def to_subscriber(row: sa.Row[Any]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        status=SubscriberStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        source=row.source,
        public_id=row.public_id,
    )


def reread(conn: Connection, subscriber_id: int) -> Subscriber:
    """The row as stored after a write in this transaction (timestamps normalized to UTC)."""
    row = subscriber_row(conn, subscribers.c.id == subscriber_id)
    if row is None:
        raise LookupError(f"subscriber {subscriber_id} vanished inside its own transaction")
    return to_subscriber(row)


def insert_subscriber(
    conn: Connection,
    email: str,
    status: SubscriberStatus,
    source: str,
    now: datetime,
    mailbox: str | None = None,
) -> Subscriber | None:
    """Insert a new address; None if a concurrent transaction inserted it first.

    The savepoint keeps the surrounding transaction usable after that unique-key violation
    (PostgreSQL only: on SQLite, BEGIN IMMEDIATE already serializes writers).
    """
    values = new_subscriber_values(email, status, source, now, mailbox)
    try:
        with conn.begin_nested():
            key = conn.execute(sa.insert(subscribers).values(values)).inserted_primary_key
    except sa.exc.IntegrityError:
        return None
    assert key is not None  # a single-row insert always reports its key
    return reread(conn, int(key[0]))


def new_subscriber_values(
    email: str, status: SubscriberStatus, source: str, now: datetime, mailbox: str | None = None
) -> dict[str, Any]:
    """A new row: the address as given, a fresh random public id, its mailbox (the caller
    knows the address rules; without one the address is its own mailbox)."""
    return {
        "email": email,
        "status": status.value,
        "source": source,
        "created_at": now,
        "updated_at": now,
        "public_id": new_public_id(),
        "mailbox": mailbox or email,
        **_lifecycle_stamps(status, now),
    }


def update_existing(
    conn: Connection, row: sa.Row[Any], status: SubscriberStatus, now: datetime
) -> Subscriber:
    """add_subscriber for a known address: refuse revival, confirm a pending one, else no-op."""
    existing = SubscriberStatus(row.status)
    after = status_after_add(existing, status)
    if after is None:
        raise SuppressedAddressError(row.email, suppression_reason(row))
    if after is not existing:
        change_status(conn, row.id, after, now)
        return reread(conn, row.id)
    return to_subscriber(row)


def status_after_add(
    existing: SubscriberStatus, wanted: SubscriberStatus
) -> SubscriberStatus | None:
    """What adding a known address makes of it (one rule for `add` and bulk import): None when
    it is suppressed (only fresh consent brings it back), active when a pending one is added
    as active, otherwise what it was."""
    if existing.suppressed and not wanted.suppressed:
        return None
    if existing is SubscriberStatus.PENDING and wanted is SubscriberStatus.ACTIVE:
        return wanted
    return existing


def change_status(
    conn: Connection, subscriber_id: int, status: SubscriberStatus, now: datetime
) -> None:
    values = status_values(status, now)
    conn.execute(sa.update(subscribers).where(subscribers.c.id == subscriber_id).values(values))


def status_values(status: SubscriberStatus, now: datetime) -> dict[str, Any]:
    """The columns a change to `status` sets: the status, and when consent came or went."""
    return {"status": status.value, "updated_at": now, **_lifecycle_stamps(status, now)}


def _lifecycle_stamps(status: SubscriberStatus, now: datetime) -> dict[str, datetime]:
    """The extra timestamp a status change sets: when consent was given or withdrawn."""
    if status is SubscriberStatus.ACTIVE:
        return {"confirmed_at": now}
    if status is SubscriberStatus.UNSUBSCRIBED:
        return {"unsubscribed_at": now}
    return {}


def suppression_reason(row: sa.Row[Any]) -> str:
    if row.status == SubscriberStatus.BOUNCED.value:
        return "bounced"
    when: datetime = row.unsubscribed_at or row.updated_at
    return f"unsubscribed on {when.date().isoformat()}; needs fresh confirmation"
