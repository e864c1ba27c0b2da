"""Issue claims, deferred retries, bounces and history: the store's side of reliable delivery.

A mixin of `store.SqlStore`, kept in its own module so the store stays readable. The claim is a
lease: one conditional UPDATE, atomic on both databases (SQLite serializes writers with BEGIN
IMMEDIATE; PostgreSQL re-checks the WHERE clause on the locked row), so of two runs that race
for an issue exactly one wins, and a crashed run's lease expires by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import ReadOnlyStoreError, StoreError
from .models import DeliveryStatus, Issue, Outcome, SubscriberStatus
from .store_engine import upsert_many
from .store_issues import load_issue, load_issues
from .store_schema import deliveries, issues, subscribers
from .store_subscribers import change_status

LEDGER_KEY = ("issue_id", "subscriber_id")
# A SENT ledger row is final; one object, so the cached upsert statement is reused.
NOT_SENT = deliveries.c.status != DeliveryStatus.SENT.value


def ledger_values(
    issue_id: int, subscriber_id: int, outcome: Outcome, now: datetime
) -> dict[str, object]:
    return {
        "issue_id": issue_id,
        "subscriber_id": subscriber_id,
        "status": outcome.status.value,
        "detail": outcome.detail,
        "message_id": outcome.message_id,
        "attempts": outcome.attempts,
        "next_attempt": outcome.next_attempt,
        "updated_at": now,
    }


LedgerRows = Sequence[tuple[int, Outcome]]


class LedgerMixin:
    engine: Engine
    read_only: bool

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def claim_issue(
        self,
        issue_id: int,
        owner: str,
        until: datetime,
        now: datetime,
        steal_from: str | None = None,
    ) -> bool:
        """Take or renew the lease on an issue; False if another live run holds it.

        `steal_from` takes over a lease whose holder is known to be dead, but only if that
        holder still has it (so two runs cannot both take over the same dead lease).
        """
        free = sa.or_(
            issues.c.claimed_by.is_(None),
            issues.c.claimed_by == owner,
            issues.c.claimed_until < now,
            issues.c.claimed_by == (steal_from or owner),
        )
        query = (
            sa.update(issues)
            .where(issues.c.id == issue_id, free)
            .values(claimed_by=owner, claimed_until=until)
        )
        with self._write("claim_issue") as conn:
            return conn.execute(query).rowcount == 1

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

    @contextmanager
    def ledger_session(self, issue_id: int) -> Iterator[Callable[[LedgerRows, datetime], None]]:
        """A writer of ledger rows for one send, on a connection held for its duration."""
        from .ledger_sql import LedgerSql  # imports this module: resolved at call time

        if self.read_only:
            raise ReadOnlyStoreError("ledger_session: the store is open read-only (dry run)")
        session = LedgerSql(self.engine, issue_id)
        try:
            yield session.write
        finally:
            session.close()

    def release_issue(self, issue_id: int, owner: str) -> None:
        query = (
            sa.update(issues)
            .where(issues.c.id == issue_id, issues.c.claimed_by == owner)
            .values(claimed_by=None, claimed_until=None)
        )
        with self._write("release_issue") as conn:
            conn.execute(query)

    def record_hard_bounce(self, subscriber_id: int, threshold: int, now: datetime) -> bool:
        """Count one permanent "no such user"; mark the address bounced at the threshold."""
        count = subscribers.c.bounce_count
        with self._write("record_hard_bounce") as conn:
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

    def active_ids(self, subscriber_ids: Sequence[int]) -> set[int]:
        """Which of these subscribers are active right now (checked just before sending)."""
        query = sa.select(subscribers.c.id).where(
            subscribers.c.id.in_(list(subscriber_ids)),
            subscribers.c.status == SubscriberStatus.ACTIVE.value,
        )
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

    def get_issue_by_id(self, issue_id: int) -> Issue | None:
        with self.engine.connect() as conn:
            return load_issue(conn, issues.c.id == issue_id)

    def recent_issues(self, newsletter: str, limit: int = 10) -> list[Issue]:
        with self.engine.connect() as conn:
            return load_issues(conn, issues.c.newsletter == newsletter, limit)
