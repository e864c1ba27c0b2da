"""Consent records, erasure and the public archive: the store's side of subscriptions.

A mixin of `store.SqlStore`, like `store_ledger.LedgerMixin`. Arguments and results are plain
values (keywords, strings, dicts) rather than service types, so the store never imports the
service above it.

Every check-then-write (the per-address limits, confirming the newest open request) runs in one
write transaction that first locks the subscriber row: SQLite's BEGIN IMMEDIATE serializes
writers anyway, and on PostgreSQL ``SELECT ... FOR UPDATE`` makes two concurrent sign-ups for
one address take turns, so neither can slip a second confirmation mail past the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.models import ConsentRequest, IssueStatus, MailLimits, Subscriber, SubscriberStatus
from newsletter.store.engine import dialect_insert
from newsletter.store.schema import consents, deliveries, issues, subscribers, suppressions
from newsletter.store.subscribers import (
    change_status,
    new_subscriber_values,
    subscriber_row,
    to_subscriber,
)

RequestResult = Literal["recorded", "already-active", "too-soon", "daily-limit", "unknown"]
ConsentConfirmation = Literal["confirmed", "already-active", "no-request", "unknown"]
DAY = timedelta(days=1)


class ConsentMixin:
    engine: Engine

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def ping(self) -> None:
        """Raise if the database cannot answer: what the health endpoint reports."""
        with self.engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1)))

    def get_subscriber_by_public_id(self, public_id: str) -> Subscriber | None:
        """The subscriber a link names (see `tokens`)."""
        with self.engine.connect() as conn:
            row = subscriber_row(conn, subscribers.c.public_id == public_id)
        return None if row is None else to_subscriber(row)

    def pending_subscriber(
        self, email: str, *, mailbox: str, source: str, now: datetime
    ) -> Subscriber:
        """The address's row, inserted as pending if it is new; an existing row is unchanged.

        The same two statements run whatever the address's state (insert if absent, then
        read), so a sign-up's store work has one shape for new, pending, active and suppressed
        addresses and its timing cannot tell them apart.
        """
        with self._write("pending_subscriber") as conn:
            values = new_subscriber_values(email, SubscriberStatus.PENDING, source, now, mailbox)
            conn.execute(_insert_if_new(conn.dialect.name), values)
            row = subscriber_row(conn, subscribers.c.email == email)
        assert row is not None  # inserted or already there, inside this transaction
        return to_subscriber(row)

    def record_consent_request(
        self, subscriber_id: int, request: ConsentRequest, limits: MailLimits, now: datetime
    ) -> RequestResult:
        """Record that a confirmation mail goes out now, unless the address's state or limits
        forbid it.

        Nothing is written when the address is active, when the last mail to its mailbox (every
        spelling that reaches the same inbox: `addresses.mailbox_key`) is younger than
        `resend_after`, or when `per_day` mails went to it in the last 24 hours: the caller then
        must not send. The mailbox's rows are locked first, so two spellings posted at once
        take turns. The limits are counted for every address, active or not, so the work has
        one shape whatever the address's state.
        """
        with self._write("record_consent_request") as conn:
            rows = _lock_mailbox(conn, subscriber_id)
            own = next((row for row in rows if row.id == subscriber_id), None)
            if own is None:
                return "unknown"
            recent = list(
                conn.scalars(
                    sa.select(consents.c.requested_at).where(
                        consents.c.subscriber_id.in_([row.id for row in rows]),
                        consents.c.requested_at > now - DAY,
                    )
                )
            )
            if own.status == SubscriberStatus.ACTIVE.value:
                return "already-active"
            if recent and now - max(recent) < limits.resend_after:
                return "too-soon"
            if len(recent) >= limits.per_day:
                return "daily-limit"
            conn.execute(
                sa.insert(consents).values(
                    subscriber_id=subscriber_id,
                    consent_version=request.consent_version[:64],
                    source=request.source[:64],
                    page_url=request.page_url,
                    requested_at=now,
                    request_ip=request.ip[:64],
                    request_user_agent=request.user_agent,
                    mail_sha256=request.mail_sha256,
                    mail_message_id=request.mail_message_id,
                    frequency=request.frequency.value,
                )
            )
            return "recorded"

    def confirm_consent(
        self,
        subscriber_id: int,
        *,
        now: datetime,
        ip: str,
        user_agent: str,
        requested_before: datetime,
        clear_hashes: Sequence[str] = (),
    ) -> ConsentConfirmation:
        """Confirm the newest open request made before `requested_before` and activate.

        All or nothing. `requested_before` is when the link was signed: a link answers its own
        request, not a newer one. A suppressed address only counts requests made after it was
        suppressed: an old request must not undo a later unsubscribe. The other open requests
        are closed, so they cannot confirm later.
        """
        with self._write("confirm_consent") as conn:
            row = _lock_subscriber(conn, subscriber_id)
            if row is None:
                return "unknown"
            status = SubscriberStatus(row.status)
            if status is SubscriberStatus.ACTIVE:
                return "already-active"
            newest = _newest_open_request(conn, row, requested_before)
            if newest is None:
                return "no-request"
            conn.execute(
                sa.update(consents)
                .where(consents.c.id == newest)
                .values(confirmed_at=now, confirm_ip=ip[:64], confirm_user_agent=user_agent)
            )
            conn.execute(
                sa.update(consents)
                .where(_open(subscriber_id), consents.c.id != newest)
                .values(closed_at=now)
            )
            change_status(conn, subscriber_id, SubscriberStatus.ACTIVE, now)
            chosen = sa.select(consents.c.frequency).where(consents.c.id == newest)
            conn.execute(  # the frequency the reader chose in the request they confirmed
                sa.update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(bounce_count=0, frequency=chosen.scalar_subquery())
            )
            if clear_hashes:
                hashes = suppressions.c.address_hash.in_(list(clear_hashes))
                conn.execute(sa.delete(suppressions).where(hashes))
            return "confirmed"

    def is_suppressed(self, hashes: Sequence[str]) -> bool:
        """Whether any of the keyed hashes of an address is on the erased list."""
        if not hashes:
            return False
        query = sa.select(sa.func.count()).where(suppressions.c.address_hash.in_(list(hashes)))
        with self.engine.connect() as conn:
            return bool(conn.scalar(query))

    def export_subscriber(self, email: str) -> dict[str, Any] | None:
        """Everything stored about an address, JSON-ready (GDPR Art. 15/20); None if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email == email)).first()
            if row is None:
                return None
            consent_rows = conn.execute(
                sa.select(consents)
                .where(consents.c.subscriber_id == row.id)
                .order_by(consents.c.requested_at, consents.c.id)
            ).all()
            delivery_rows = conn.execute(
                sa.select(issues.c.issue_date, issues.c.subject, deliveries)
                .select_from(deliveries.join(issues, issues.c.id == deliveries.c.issue_id))
                .where(deliveries.c.subscriber_id == row.id)
                .order_by(issues.c.issue_date)
            ).all()
        return {
            "subscriber": _plain(row),
            "consents": [_plain(r, drop=("subscriber_id",)) for r in consent_rows],
            "deliveries": [_plain(r, drop=("subscriber_id", "issue_id")) for r in delivery_rows],
        }

    def erase_subscriber(self, email: str, *, address_hash: str, now: datetime) -> dict[str, int]:
        """Delete every row naming the address and remember only its keyed hash.

        Returns how many rows of each kind went, so the operator can report what was erased.
        """
        erased = {"subscriber": 0, "consents": 0, "deliveries": 0}
        with self._write("erase_subscriber") as conn:
            row = conn.execute(
                sa.select(subscribers.c.id).where(subscribers.c.email == email)
            ).first()
            if row is not None:
                erased["consents"] = _delete(conn, consents, consents.c.subscriber_id == row.id)
                erased["deliveries"] = _delete(
                    conn, deliveries, deliveries.c.subscriber_id == row.id
                )
                erased["subscriber"] = _delete(conn, subscribers, subscribers.c.id == row.id)
            known = suppressions.c.address_hash == address_hash
            if conn.scalar(sa.select(sa.func.count()).where(known)) == 0:
                conn.execute(
                    sa.insert(suppressions).values(
                        address_hash=address_hash, reason="erased", created_at=now
                    )
                )
        return erased

    def prune_pending(self, created_before: datetime) -> int:
        """Delete sign-ups never confirmed since before `created_before`, with their requests.

        Data minimisation (GDPR Art. 5(1)(c)): an address that never confirmed gave no consent,
        so nothing about it is kept, not even a suppression hash.
        """
        stale = sa.select(subscribers.c.id).where(
            subscribers.c.status == SubscriberStatus.PENDING.value,
            subscribers.c.created_at < created_before,
        )
        with self._write("prune_pending") as conn:
            ids = list(conn.scalars(stale))
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                _delete(conn, consents, consents.c.subscriber_id.in_(chunk))
                _delete(conn, subscribers, subscribers.c.id.in_(chunk))
        return len(ids)

    def archive_page(
        self, newsletter: str, before: date | None, limit: int
    ) -> list[tuple[date, str]]:
        """(date, subject) of stored issues, newest first, older than `before` if given.

        Reads two columns only: the archive index must not load every issue's HTML.
        """
        query = sa.select(issues.c.issue_date, issues.c.subject).where(
            issues.c.newsletter == newsletter,
            issues.c.status != IssueStatus.ABANDONED.value,  # nothing went out: nothing to show
        )
        if before is not None:
            query = query.where(issues.c.issue_date < before)
        query = query.order_by(issues.c.issue_date.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [(found.issue_date, found.subject) for found in conn.execute(query)]


def _insert_if_new(dialect: str) -> sa.Insert:
    return dialect_insert(dialect, subscribers).on_conflict_do_nothing(index_elements=["email"])


def _lock_mailbox(conn: Connection, subscriber_id: int) -> list[sa.Row[Any]]:
    """Every row delivered to the subscriber's mailbox, locked, in id order (no deadlocks)."""
    mailbox = sa.select(subscribers.c.mailbox).where(subscribers.c.id == subscriber_id)
    query = (
        sa.select(subscribers)
        .where(subscribers.c.mailbox == mailbox.scalar_subquery())
        .order_by(subscribers.c.id)
        .with_for_update()
    )
    return list(conn.execute(query))


def _lock_subscriber(conn: Connection, subscriber_id: int) -> sa.Row[Any] | None:
    query = sa.select(subscribers).where(subscribers.c.id == subscriber_id).with_for_update()
    return conn.execute(query).first()


def _open(subscriber_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        consents.c.subscriber_id == subscriber_id,
        consents.c.confirmed_at.is_(None),
        consents.c.closed_at.is_(None),
    )


def _newest_open_request(
    conn: Connection, subscriber: sa.Row[Any], requested_before: datetime
) -> int | None:
    query = sa.select(consents.c.id).where(
        _open(subscriber.id), consents.c.requested_at < requested_before
    )
    if SubscriberStatus(subscriber.status).suppressed:  # suppressed since its updated_at
        query = query.where(consents.c.requested_at >= subscriber.updated_at)
    query = query.order_by(consents.c.requested_at.desc(), consents.c.id.desc()).limit(1)
    found = conn.scalar(query)
    return None if found is None else int(found)


def _delete(conn: Connection, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.delete(table).where(where)).rowcount)


def _plain(row: sa.Row[Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row as JSON-ready values: dates and timestamps in ISO 8601 (UTC)."""
    out: dict[str, Any] = {}
    for key, value in row._mapping.items():
        if key in drop:
            continue
        out[str(key)] = value.isoformat() if isinstance(value, date | datetime) else value
    return out
