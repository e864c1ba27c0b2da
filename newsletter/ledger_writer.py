"""Group commit for the delivery ledger.

A worker hands its outcome over at once and waits for its commit only when it is about to write
the next message's data (`ports.Connection.send`'s gate), so at any moment at most one
accepted-but-unrecorded message exists per connection: that is the whole duplicate bound after
a crash. The commit is made when someone waits for an outcome, not when it arrives: by then the
outcomes of the other connections have come in too and share the transaction (bench/
ledger_cost.py: a row costs 35.8 us of CPU alone on SQLite, 21.9 in fours; 223 and 77 us on
PostgreSQL), while the envelope's round trip overlaps it. One task writes.

SQLite's commit is CPU in this process, so its write is a plain call on the event loop,
blocking it that long: handing it to a thread cost more than it saved (2,260 instead of 3,200
msg/s, bench/send_bench.py, 20,000 readers). PostgreSQL's waits on the server, so its write is
awaited (`store.ledger_sql`, psycopg's asyncio connection) and the loop goes on sending
meanwhile. It used to run in a thread of its own beside the loop: each commit then took two
hand-overs between threads, 1.09 ms a commit where the statement took 0.67 (medians, 10,000
readers), and those one-at-a-time commits bounded the send. Awaited, one process sent
1,720 / 1,814 instead of 1,288 / 1,309 msg/s, 0.40 ms of CPU a message instead of 0.52
(bench/send_bench.py, 10,000 readers, two interleaved pairs).

The writer takes its group one pass of the loop after it is woken. The replies a pass of the
loop reads resume their workers together in the next, so the waiter that woke the writer was
one of several about to hand an outcome over: taken at once, nearly every SQLite commit held
one outcome (and wrote a whole page of the table and of each of its four indexes to the WAL,
however few it held). With the pass, two on average, and a send ran 3,844-4,060 instead of
3,612-3,658 msg/s (bench/send_bench.py, 20,000 readers, one process, three interleaved pairs).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any

from newsletter.errors import StoreError
from newsletter.models import Outcome

Rows = Sequence[tuple[int, Outcome]]
# A group's commit: done when the call returns, or when what it returns is (a server's).
Write = Callable[[Rows], Awaitable[None] | None]


class Receipt:
    """An outcome in the writer's hands. Awaiting it wakes the writer: a commit is made only
    when someone waits for one, which is what lets several outcomes share it."""

    __slots__ = ("future", "wake")

    def __init__(self, wake: asyncio.Event, future: asyncio.Future[None]) -> None:
        self.wake = wake
        self.future = future

    def __await__(self) -> Generator[Any, None, None]:
        self.wake.set()
        # A waiter cancelled (a forced stop) must not cancel the outcome's own future, which
        # the writer and other waiters (the exit's flush) still go by.
        return asyncio.shield(self.future).__await__()


class LedgerWriter:
    def __init__(self, write: Write) -> None:
        self.write = write
        self.pending: list[tuple[int, Outcome, asyncio.Future[None]]] = []
        self.writing: list[asyncio.Future[None]] = []  # the outcomes of the write under way
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None  # `run`, as `ledger_writer` started it
        self.lost: StoreError | None = None  # outcomes given up when the writer stopped

    def record(self, subscriber_id: int, outcome: Outcome) -> Receipt:
        """Take the outcome now; awaiting the receipt asks for the commit and returns once the
        outcome is committed (raises if the write failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((subscriber_id, outcome, future))
        if self.task is not None and self.task.done():
            self._abandon()  # no writer left to store it
        return Receipt(self.wake, future)

    async def run(self) -> None:
        try:
            await self._write_when_asked()
        finally:  # stopped (cancelled, or by an error no write should raise): nobody stores now
            self._abandon()

    async def _write_when_asked(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            # One more pass of the loop: outcomes of replies read with the waiter's join this
            # commit (see the module docstring).
            await asyncio.sleep(0)
            batch, self.pending = self.pending, []
            if not batch:  # woken for an outcome the write that just ended has taken
                continue
            rows = [(sid, outcome) for sid, outcome, _ in batch]
            self.writing = [future for *_, future in batch]
            try:
                done = self.write(rows)
                if inspect.isawaitable(done):
                    await done
            except Exception as exc:  # every waiter learns that its row is not stored
                for future in self.writing:
                    future.set_exception(exc)
                    # Marked as seen: a waiter still raises it, and a clean exit's flush does,
                    # but an outcome nobody waits for any more (its worker stopped on this very
                    # error) must not print the error again as a traceback when collected.
                    future.exception()
            else:
                for future in self.writing:
                    future.set_result(None)
            self.writing = []

    def _abandon(self) -> None:
        """Every outcome not stored yet learns that it will not be: its waiter raises instead
        of waiting for a writer that is gone, and the end of the send reports it (`flush`);
        the next run sends those readers again."""
        left = [*self.writing, *(future for *_, future in self.pending)]
        self.writing, self.pending = [], []
        if not left:
            return
        error = StoreError(
            f"the ledger's writer stopped with {len(left)} outcome(s) not known stored"
        )
        self.lost = self.lost or error
        for future in left:
            if not future.done():
                future.set_exception(error)
                future.exception()  # seen: a waiter still raises it, nobody else prints it

    async def flush(self) -> None:
        """Commit every outcome handed over so far, waited for or not; raise a write's error.
        A writer that is gone (its task ended) stores nothing more: its outcomes fail at once
        rather than keeping the end of the send waiting for ever."""
        futures = [*self.writing, *(future for *_, future in self.pending)]
        if futures:
            self.wake.set()
            await self._settled(futures)
        errors = [error for future in futures if (error := future.exception()) is not None]
        if errors:
            raise errors[0]
        if self.lost is not None:
            raise self.lost

    async def _settled(self, futures: list[asyncio.Future[None]]) -> None:
        """Wait until each of `futures` is done, or the writer is gone (then they are failed)."""
        running: set[asyncio.Future[Any]] = set() if self.task is None else {self.task}
        left: set[asyncio.Future[Any]] = {future for future in futures if not future.done()}
        while left:
            if self.task is not None and self.task.done():  # stopped, or cancelled unstarted
                self._abandon()
                return
            done, _ = await asyncio.wait(left | running, return_when=asyncio.FIRST_COMPLETED)
            left -= done


@contextlib.asynccontextmanager
async def ledger_writer(write: Write) -> AsyncIterator[LedgerWriter]:
    """The writer for one send. A write cut short by a forced stop is the store's to finish:
    its session waits for a statement under way before it closes (`store.ledger_sql`)."""
    writer = LedgerWriter(write)
    task = writer.task = asyncio.create_task(writer.run())
    try:
        try:
            yield writer
        except BaseException:
            # A send stopped by force or on an error can leave outcomes nobody waited for:
            # stored all the same if they can be, while the first error goes on up.
            with contextlib.suppress(Exception):
                await writer.flush()
            raise
        await writer.flush()  # none are left after a whole send; if one were, it is stored
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
