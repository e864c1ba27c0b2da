"""Batches: the store's side of several processes sending one issue (a mixin of SqlStore).

Planning a round and claiming a batch are check-then-write steps, so each runs in one write
transaction that first locks the issue row (SQLite: BEGIN IMMEDIATE serializes writers;
PostgreSQL: `SELECT ... FOR UPDATE`). Claims on PostgreSQL also skip rows another transaction
holds (`FOR UPDATE SKIP LOCKED`), so processes never queue behind each other for a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.models import Batch
from newsletter.store.schema import batches, issues, subscribers


class BatchMixin:
    engine: Engine

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _unsettled(self, issue_id: int, retry_due: datetime | None) -> sa.ColumnElement[bool]:
        raise NotImplementedError

    def plan_round(
        self,
        issue_id: int,
        size: int,
        retry_due: datetime | None,
        now: datetime,
        *,
        start: bool = True,
        limit: int | None = None,
    ) -> int:
        """Cut the next readers still needing the issue into at most `limit` batches of `size`
        (all of them with None); return how many.

        A round is planned a few batches at a time, as the senders run out of batches, so the
        first message does not wait for the whole list to be cut: `issues.plan_cursor` holds the
        last id planned and is cleared once the round's last reader is in a batch. A call goes
        on with the round being planned; with none, it starts a new round (from the first
        reader) only with `start` and while no batch of the issue is open: one round at a time.
        """
        with self._write("plan_round") as conn:
            cursor = _lock_issue(conn, issue_id)
            if cursor is None:
                if not start or conn.scalar(_open_batches(issue_id)):
                    return 0
                cursor = 0
            number = int(
                conn.scalar(
                    sa.select(sa.func.coalesce(sa.func.max(batches.c.number), 0)).where(
                        batches.c.issue_id == issue_id
                    )
                )
                or 0
            )
            unsettled = self._unsettled(issue_id, retry_due)
            low, planned, ended = cursor, 0, False
            while not ended and (limit is None or planned < limit):
                after = sa.select(subscribers.c.id).where(unsettled, subscribers.c.id > low)
                # keyset pages: the database finds each page's last id, in its index
                high = conn.scalar(after.order_by(subscribers.c.id).offset(size - 1).limit(1))
                if high is None:  # fewer than `size` left: the last page ends at the last one
                    ended = True
                    high = conn.scalar(sa.select(sa.func.max(after.subquery().c.id)))
                    if high is None:
                        break
                number = number + 1
                conn.execute(
                    sa.insert(batches).values(
                        issue_id=issue_id, number=number, low_id=low, high_id=high, created_at=now
                    )
                )
                low, planned = high, planned + 1
            # A full last page may not be the round's last: the next call looks, and ends it.
            conn.execute(
                sa.update(issues)
                .where(issues.c.id == issue_id)
                .values(plan_cursor=None if ended else low)
            )
            return planned

    def claim_batch(
        self,
        issue_id: int,
        owner: str,
        until: datetime,
        now: datetime,
        steal_from: Sequence[str] = (),
    ) -> Batch | None:
        """The first open batch nobody live holds, now leased to `owner`; None if there is none.

        A batch is free when unclaimed, when its lease ran out, or when its holder is in
        `steal_from` (known dead by the caller).
        """
        free = sa.or_(
            batches.c.claimed_by.is_(None),
            batches.c.claimed_until < now,
            batches.c.claimed_by.in_(list(steal_from)) if steal_from else sa.false(),
        )
        query = (
            sa.select(batches.c.number, batches.c.low_id, batches.c.high_id)
            .where(batches.c.issue_id == issue_id, batches.c.done_at.is_(None), free)
            .order_by(batches.c.number)
            .limit(1)
        )
        with self._write("claim_batch") as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = conn.execute(query).first()
            if row is None:
                return None
            conn.execute(
                sa.update(batches)
                .where(batches.c.issue_id == issue_id, batches.c.number == row.number)
                .values(claimed_by=owner, claimed_until=until)
            )
        return Batch(issue_id, row.number, row.low_id, row.high_id)

    def renew_batch(self, batch: Batch, owner: str, until: datetime) -> bool:
        """Extend the lease; False if the batch is no longer ours (taken over as dead)."""
        query = _owned(batch, owner).where(batches.c.done_at.is_(None)).values(claimed_until=until)
        with self._write("renew_batch") as conn:
            return conn.execute(query).rowcount == 1

    def finish_batch(self, batch: Batch, owner: str, now: datetime) -> None:
        query = _owned(batch, owner).values(done_at=now, claimed_until=None)
        with self._write("finish_batch") as conn:
            conn.execute(query)

    def release_batch(self, batch: Batch, owner: str) -> None:
        """Give an unfinished batch back at once (a stopped send): another process takes it."""
        query = _owned(batch, owner).values(claimed_by=None, claimed_until=None)
        with self._write("release_batch") as conn:
            conn.execute(query)

    def batch_holders(self, issue_id: int, now: datetime) -> list[str]:
        """Who holds a live lease on an open batch of the issue."""
        query = (
            sa.select(batches.c.claimed_by)
            .distinct()
            .where(
                batches.c.issue_id == issue_id,
                batches.c.done_at.is_(None),
                batches.c.claimed_by.is_not(None),
                batches.c.claimed_until >= now,
            )
        )
        with self.engine.connect() as conn:
            return [str(owner) for owner in conn.scalars(query)]

    def free_batches(self, issue_id: int, now: datetime) -> int:
        """Open batches of the issue that nobody holds a live lease on (given back, or run out)."""
        query = sa.select(sa.func.count()).where(
            batches.c.issue_id == issue_id,
            batches.c.done_at.is_(None),
            sa.or_(batches.c.claimed_by.is_(None), batches.c.claimed_until < now),
        )
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)


def _lock_issue(conn: Connection, issue_id: int) -> int | None:
    """Lock the issue's row for this transaction; return its plan cursor."""
    query = sa.select(issues.c.plan_cursor).where(issues.c.id == issue_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    cursor = conn.scalar(query)
    return None if cursor is None else int(cursor)


def _open_batches(issue_id: int) -> sa.Select[Any]:
    return sa.select(sa.func.count()).where(
        batches.c.issue_id == issue_id, batches.c.done_at.is_(None)
    )


def _owned(batch: Batch, owner: str) -> sa.Update:
    """An update of `batch` that touches it only while `owner` still holds it."""
    return sa.update(batches).where(
        batches.c.issue_id == batch.issue_id,
        batches.c.number == batch.number,
        batches.c.claimed_by == owner,
    )
