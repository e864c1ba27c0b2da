"""A store's ledger session driven from a test as a send drives it: every group, then the
session's end, on one event loop (a PostgreSQL session's connection lives on the loop that
opened it, and its groups are awaited there)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from newsletter.models import Outcome
from newsletter.store.ledger_sql import LedgerSql

Group = Sequence[tuple[int, Outcome]]


async def write_group(session: LedgerSql, rows: Group, now: datetime) -> None:
    done = session(rows, now)
    if done is not None:
        await done


def write_groups(session: LedgerSql, *groups: Group, now: datetime) -> None:
    """Each group committed in turn, then the session ended (also when a group failed)."""

    async def run() -> None:
        try:
            for rows in groups:
                await write_group(session, rows, now)
        finally:
            await session.aclose()

    asyncio.run(run())
