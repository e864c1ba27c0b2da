"""An issue with readers in a real store, its batches as rows, and virtual time for the renewer.

`newsletter.lease` renews on the event loop (`asyncio.sleep` a third of the TTL) and stamps leases
with the injected clock. `VirtualTime` stands in for the `asyncio` the lease module sees: each
sleep is noted and parked until the test calls `elapse()`, which moves the FakeClock on by the
requested time and lets the renewer run one round. So a test walks through renewals minute by
minute without waiting, and the store sees exactly the instants the lease code computed.
"""

from __future__ import annotations

import asyncio
import types
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from newsletter.models import Digest, SubscriberStatus
from newsletter.store import SqlStore
from newsletter.store.schema import batches
from tests.support.clock import T0, FakeClock

DIGEST = Digest("subject", "preheader", "<p>html</p>", "text", ())
ELSEWHERE = "mail2.elsewhere.example:4242:c0ffee"  # a live process on another host


def issue_with_readers(store: SqlStore, count: int) -> tuple[int, list[int]]:
    """An issue made at T0 for `count` readers who confirmed the day before."""
    ids = [
        store.add_subscriber(
            f"reader{n}@example.org",
            status=SubscriberStatus.ACTIVE,
            source="t",
            now=T0 - timedelta(days=1),
        ).id
        for n in range(count)
    ]
    issue = store.create_issue("REE News", date(2026, 11, 28), T0 - timedelta(hours=1), DIGEST, T0)
    return issue.id, ids


def batch_rows(store: SqlStore, issue_id: int) -> dict[int, sa.Row[Any]]:
    """The issue's batches by number: claimed_by, claimed_until, done_at as the store has them."""
    query = sa.select(batches).where(batches.c.issue_id == issue_id).order_by(batches.c.number)
    with store.engine.connect() as conn:
        return {row.number: row for row in conn.execute(query)}


def break_batches_table(store: SqlStore) -> None:
    """A database fault for every later write to the batches: SQLite loses the table (renamed
    away: "no such table"), PostgreSQL reports a full disk (SQLSTATE 53100) on each update."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text("ALTER TABLE batches RENAME TO batches_gone"))
            return
        conn.execute(
            sa.text(
                "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER disk_full BEFORE UPDATE ON batches "
                "FOR EACH ROW EXECUTE FUNCTION disk_full()"
            )
        )


class VirtualTime(types.ModuleType):
    """`asyncio` for the lease module, whose sleeps last until the test says they are over."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__("asyncio")
        self.clock = clock
        self.delays: list[float] = []
        self._wake: asyncio.Future[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self._wake = asyncio.get_running_loop().create_future()
        await self._wake

    async def asleep(self) -> bool:
        """Whether the renewer is parked in a sleep now (after letting it get there)."""
        for _ in range(20):
            await asyncio.sleep(0)
        return self._wake is not None and not self._wake.done()

    async def elapse(self) -> datetime:
        """Let the pending sleep run out: the clock moves on by it and the renewer runs a round."""
        assert await self.asleep(), "the renewer is not waiting"
        assert self._wake is not None
        self.clock.advance(seconds=self.delays[-1])
        self._wake.set_result(None)
        await self.asleep()
        return self.clock.now
