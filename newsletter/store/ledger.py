"""The delivery ledger, bounces and issue history: the store's side of reliable delivery.

A mixin of `store.SqlStore`, kept in its own module so the store stays readable; who sends
which readers is `store.batches`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.errors import ReadOnlyStoreError, StoreError
from newsletter.models import Issue, Outcome, SubscriberStatus
from newsletter.store.engine import raw_column, upsert_many
from newsletter.store.issues import load_issue, load_issues
from newsletter.store.ledger_sql import LEDGER_KEY, NOT_SENT, LedgerSql, ledger_values
from newsletter.store.schema import deliveries, issues, subscribers
from newsletter.store.subscribers import change_status

LedgerRows = Sequence[tuple[int, Outcome]]
# Which of a page of readers are still active: asked every 32 readers of a send (`raw_column`).
_ACTIVE = sa.select(subscribers.c.id).where(
    subscribers.c.id.in_(sa.bindparam("ids", expanding=True)),
    subscribers.c.status == SubscriberStatus.ACTIVE.value,
)


class LedgerMixin:
    engine: Engine
    read_only: bool

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def record_outcomes(
        self, issue_id: int, rows: Sequence[tuple[int, Outcome]], now: datetime
    ) -> None:
        """Upsert several ledger rows in one transaction (the group commit of a send)."""
        values = [ledger_values(issue_id, subscriber_id, o, now) for subscriber_id, o in rows]
        if not values:
            return
        try:
            with self._write("record_outcomes") as conn:
                upsert_many(conn, deliveries, values, LEDGER_KEY, where=NOT_SENT)
        except sa.exc.IntegrityError as exc:  # the foreign keys: no such issue or subscriber
            ids = [subscriber_id for subscriber_id, _ in rows]
            raise StoreError(f"no issue {issue_id} or no subscriber among {ids}") from exc

    @asynccontextmanager
    async def ledger_session(self, issue_id: int) -> AsyncIterator[LedgerSql]:
        """A writer of ledger rows for one send, on a connection held for its duration."""
        if self.read_only:
            raise ReadOnlyStoreError("ledger_session: the store is open read-only (dry run)")
        session = LedgerSql(self.engine, issue_id)
        try:
            await session.open()
            yield session
        finally:
            await session.aclose()

    def record_hard_bounce(self, subscriber_id: int, threshold: int, now: datetime) -> bool:
        """Count one permanent "no such user"; mark the address bounced at the threshold."""
        with self._write("record_hard_bounce") as conn:
            return count_hard_bounce(conn, subscriber_id, threshold, now)

    def active_ids(self, subscriber_ids: Sequence[int]) -> set[int]:
        """Which of these subscribers are active right now (checked just before sending)."""
        return set(raw_column(self.engine, _ACTIVE, {"ids": list(subscriber_ids)}))

    def get_issue_by_id(self, issue_id: int) -> Issue | None:
        with self.engine.connect() as conn:
            return load_issue(conn, issues.c.id == issue_id)

    def recent_issues(self, newsletter: str, limit: int = 10) -> list[Issue]:
        with self.engine.connect() as conn:
            return load_issues(conn, issues.c.newsletter == newsletter, limit)


def count_hard_bounce(conn: Connection, subscriber_id: int, threshold: int, now: datetime) -> bool:
    """`record_hard_bounce` inside the caller's transaction (the signal desk needs it there)."""
    count = subscribers.c.bounce_count
    bumped = conn.execute(
        sa.update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(bounce_count=count + 1)
        .returning(count, subscribers.c.status)
    ).first()
    if bumped is None:
        raise StoreError(f"no subscriber with id {subscriber_id}")
    reached = bool(bumped.bounce_count >= threshold)
    if reached and bumped.status != SubscriberStatus.BOUNCED.value:
        change_status(conn, subscriber_id, SubscriberStatus.BOUNCED, now)
    return reached
