"""Who sends which readers: leases on batches, so any number of processes on any number of
hosts send one issue together and a dead process's batch is taken over.

The owner is "host:pid:nonce". A batch held by a process on this host that no longer exists is
taken over at once (the common crash-and-rerun case); one from another host runs out after
`LEASE_TTL` without renewal. While a process works on a batch it renews the lease every third
of the TTL; if a renewal fails (the batch was taken over, the store failed) it stops sending.
A process that has finished its own batches while others still hold some waits for them
(`wait_for_takeover`), so the last one standing takes over a batch whose holder died instead of
leaving it to tomorrow's run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newsletter.clock import Clock
from newsletter.errors import StoreError
from newsletter.models import Batch, Subscriber
from newsletter.ports import Store

LEASE_TTL = timedelta(seconds=60)
TAKEOVER_POLL = 0.5  # seconds between looks at the batches other processes hold
# Batches planned at a time (`Store.plan_round`): enough for a few processes to claim one each,
# few enough that planning them (~1 ms a batch of 500) never holds up the first message.
PLAN_AHEAD = 8


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def dead_local_owner(owner: str | None) -> bool:
    """True when `owner` names a process on this host that has exited."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Claims:
    """The batches one process holds for an issue, and when each is done.

    A batch is done once it has handed out all its readers *and* every one of them has an
    outcome: marking it done earlier would let another process plan those readers again while
    they are still on the wire here. A run starts at most one round, before it claims anything.
    """

    store: Store
    issue_id: int
    owner: str
    clock: Clock
    size: int
    plan: bool = True  # False: a takeover round claims what others left and plans nothing
    held: dict[int, Batch] = field(default_factory=dict)
    outstanding: Counter[int] = field(default_factory=Counter)
    exhausted: set[int] = field(default_factory=set)
    batch_of: dict[int, int] = field(default_factory=dict)  # subscriber id -> batch number

    def readers(self, due: Callable[[], datetime | None]) -> Iterator[Subscriber]:
        """The issue's readers still needing it, batch by batch as this process claims them.

        Out of batches, a process plans the next few of the round being planned (whoever runs
        out first does it); a new round it starts only if it has claimed nothing yet and nobody
        holds a batch of the issue (others, or our own messages in flight, finish theirs).
        """
        planned = not self.plan
        while True:
            batch = claim_next(self.store, self.issue_id, self.owner, self.clock)
            if batch is None:
                start = not (
                    planned or self.held or self.store.batch_holders(self.issue_id, self.clock())
                )
                more = self.store.plan_round(
                    self.issue_id, self.size, due(), self.clock(), start=start, limit=PLAN_AHEAD
                )
                if not more:
                    return
                planned = True
                continue
            planned = True
            self.held[batch.number] = batch
            for subscriber in self.store.pending_recipients(
                self.issue_id, retry_due=due(), within=batch
            ):
                self.outstanding[batch.number] += 1
                self.batch_of[subscriber.id] = batch.number
                yield subscriber
            self.exhausted.add(batch.number)
            self._finish_if_done(batch.number)

    def settled(self, subscriber_id: int) -> None:
        """A reader this process handed out has an outcome now (recorded, skipped, failed)."""
        number = self.batch_of.pop(subscriber_id, None)
        if number is None:
            return
        self.outstanding[number] -= 1
        self._finish_if_done(number)

    def _finish_if_done(self, number: int) -> None:
        if number in self.exhausted and self.outstanding[number] <= 0:
            batch = self.held.pop(number)
            self.exhausted.discard(number)
            del self.outstanding[number]
            self.store.finish_batch(batch, self.owner, self.clock())


def claim_next(store: Store, issue_id: int, owner: str, clock: Clock) -> Batch | None:
    """The next open batch of the issue for `owner`: free, expired, or held by a dead process."""
    now = clock()
    dead = [holder for holder in store.batch_holders(issue_id, now) if dead_local_owner(holder)]
    return store.claim_batch(issue_id, owner, now + LEASE_TTL, now, dead)


async def wait_for_takeover(
    store: Store, issue_id: int, clock: Clock, stopping: Callable[[], bool]
) -> bool:
    """Wait while other processes hold open batches of the issue.

    True as soon as one can be taken over (its holder died on this host, gave it back, or let
    its lease run out); False once none is left open, or when this run is stopping.
    """
    while not stopping():
        now = clock()
        holders = store.batch_holders(issue_id, now)
        if any(dead_local_owner(holder) for holder in holders):
            return True
        if store.free_batches(issue_id, now):
            return True
        if not holders:
            return False
        await asyncio.sleep(TAKEOVER_POLL)
    return False


@contextlib.asynccontextmanager
async def renewing(
    store: Store, owner: str, clock: Clock, held: Callable[[], Iterable[Batch]]
) -> AsyncIterator[asyncio.Event]:
    """Renew the leases on the batches `held()` names; the event is set if one was lost.

    On the way out the batches still held (a stopped send) are released, so another process
    takes them at once; a store too broken to release them lets the leases run out instead.
    """
    lost = asyncio.Event()
    renewer = asyncio.create_task(_renew(store, owner, clock, held, lost))
    try:
        yield lost
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        for batch in list(held()):
            with contextlib.suppress(StoreError):
                store.release_batch(batch, owner)


async def _renew(
    store: Store,
    owner: str,
    clock: Clock,
    held: Callable[[], Iterable[Batch]],
    lost: asyncio.Event,
) -> None:
    while True:
        await asyncio.sleep(LEASE_TTL.total_seconds() / 3)
        for batch in list(held()):
            try:
                renewed = store.renew_batch(batch, owner, clock() + LEASE_TTL)
            except StoreError:
                renewed = False  # we cannot prove we still hold it: stop sending
            if not renewed:
                lost.set()
                return
