"""Group commit for the delivery ledger.

Each worker hands its outcome over and waits until it is committed before it takes its next
message, so at any moment at most one accepted-but-unrecorded message exists per connection:
that is the whole duplicate bound after a crash. Outcomes that arrive together share one
transaction, written by one task on the event loop: the commit blocks the loop for the few
hundred microseconds it takes, and every outcome that arrived meanwhile joins the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from newsletter.models import Outcome

Rows = Sequence[tuple[int, Outcome]]


class LedgerWriter:
    def __init__(self, write: Callable[[Rows], None]) -> None:
        self.write = write
        self.pending: list[tuple[int, Outcome, asyncio.Future[None]]] = []
        self.wake = asyncio.Event()

    async def record(self, subscriber_id: int, outcome: Outcome) -> None:
        """Return once the outcome is committed (raise if the write failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((subscriber_id, outcome, future))
        self.wake.set()
        await future

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            try:
                self.write([(sid, outcome) for sid, outcome, _ in batch])
            except Exception as exc:  # every waiter learns that its row is not stored
                for *_, future in batch:
                    if not future.done():  # a waiter cancelled meanwhile has stopped listening
                        future.set_exception(exc)
            else:
                for *_, future in batch:
                    if not future.done():
                        future.set_result(None)


@contextlib.asynccontextmanager
async def ledger_writer(write: Callable[[Rows], None]) -> AsyncIterator[LedgerWriter]:
    writer = LedgerWriter(write)
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
