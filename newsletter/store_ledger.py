"""Issue claims, deferred retries, bounces and history: the store's side of reliable delivery.

A mixin of `store.SqlStore`, kept in its own module so the store stays readable. The claim is a
lease: one conditional UPDATE, atomic on both databases (SQLite serializes writers with BEGIN
IMMEDIATE; PostgreSQL re-checks the WHERE clause on the locked row), so of two runs that race
for an issue exactly one wins, and a crashed run's lease expires by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import StoreError
from .models import Issue, SubscriberStatus
from .store_issues import load_issue, load_issues
from .store_schema import issues, subscribers
from .store_subscribers import change_status


class LedgerMixin:
    engine: Engine

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
