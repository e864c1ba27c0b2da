"""Concurrency, rate and retry policy: gets prebuilt messages through a Transport.

A fixed pool of workers, each owning one persistent connection, pulls from a bounded queue, so
memory stays flat however long the list. Every message ends in exactly one `Outcome`, handed to
`record` as soon as the server has answered; messages never taken from the queue get none, which
is what lets the next run resume without doubling anyone. `record` takes the outcome at once and
returns what to await for its commit; a worker awaits that just before the next message's data
goes out (the connection's gate), so the envelope's round trip overlaps the commit. Past the
gate a worker may take its next message from the queue early, so that the connection writes
that envelope with this data (`ports.Connection.send`'s `ahead`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from newsletter.clock import Clock
from newsletter.compose import ComposedMessage
from newsletter.errors import (
    ConnectionLostError,
    DeliveryError,
    NewsletterError,
    PermanentDeliveryError,
    ServerRefusedError,
    TransientDeliveryError,
)
from newsletter.models import DeliveryStatus, Outcome
from newsletter.ports import Connection, Envelope, Transport

# Called when the outcome is known; the awaitable it returns ends once the outcome is stored.
Recorder = Callable[[ComposedMessage, Outcome], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryPolicy:
    connections: int = 4
    rate_limit: float = 0.0  # messages per second over all connections; 0 = unlimited
    attempts: int = 3  # tries per message within one run for transient failures
    backoff: float = 0.5  # seconds before the 2nd try, doubled each time after
    defer_for: timedelta = timedelta(minutes=30)  # when a deferred message may be retried
    max_connect_failures: int = 5  # consecutive failed connects that mean "server down"

    def __post_init__(self) -> None:
        # With no connection nothing is ever sent, and with no attempt a message would be
        # "deferred" without a try: either would look like a send while mailing nobody.
        for name in ("connections", "attempts", "max_connect_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"DeliveryPolicy.{name} must be at least 1")


class RateLimiter:
    """Spaces sends evenly; with rate 0 it never waits."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class _Shared:
    """State the workers share: the limiter and the run-wide connect health."""

    transport: Transport
    sender: Callable[[ComposedMessage], str]
    policy: DeliveryPolicy
    record: Recorder
    limiter: RateLimiter
    clock: Clock
    should_stop: Callable[[], bool] = lambda: False
    connect_failures: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    async def connect(self) -> Connection:
        try:
            connection = await self.transport.connect()
        except ServerRefusedError:
            raise
        except DeliveryError as exc:
            self.connect_failures += 1
            if self.connect_failures >= self.policy.max_connect_failures:
                raise ServerRefusedError(
                    f"{self.connect_failures} connection attempts failed in a row; last: {exc}"
                ) from exc
            raise
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # aiosmtplib's wait_for (Python 3.11) can hand back a session whose connect was
            # cancelled; going on would send past the cancel, then wait for ever for more.
            connection.abort()
            raise asyncio.CancelledError
        self.connect_failures = 0
        return connection


class _Stopped(Exception):
    """A stop seen at the gate; the connection, left half-way through DATA, is dropped."""


class _Worker:
    """One connection's loop: send, classify, retry, record."""

    def __init__(self, shared: _Shared, queue: asyncio.Queue[ComposedMessage | None]) -> None:
        self.shared = shared
        self.queue = queue
        self.connection: Connection | None = None
        self.unstored: Awaitable[None] | None = None  # the previous outcome's commit
        self.next: list[ComposedMessage | None] = []  # taken from the queue early by `ahead`
        self.lent = False  # this try told its connection the next envelope

    async def take(self) -> ComposedMessage | None:
        return self.next.pop() if self.next else await self.queue.get()

    def ahead(self) -> Envelope | None:
        """The next message's envelope, taken from the queue now if one is waiting; asked
        right after the gate, which has just looked for a stop. Never under a rate limit: the
        envelope would wait at the server for its slot."""
        if self.shared.policy.rate_limit:
            return None
        if not self.next:
            try:
                self.next.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                return None
        item = self.next[0]
        if item is None:
            return None  # the end of the queue
        self.lent = True
        return self.shared.sender(item), item.recipient.email, item.data

    async def run(self) -> None:
        try:
            while (item := await self.take()) is not None:
                if self.shared.should_stop():
                    continue  # left without an outcome: the next run sends it
                try:
                    outcome = await self.deliver(item)
                except _Stopped:  # seen at the gate: no data went out, the next run sends it
                    await self.drop(broken=True)
                    continue
                await self.stored()  # if no data went out, the gate was never reached
                self.shared.counts[outcome.status] = self.shared.counts.get(outcome.status, 0) + 1
                self.unstored = self.shared.record(item, outcome)
            await self.stored()
        except BaseException:
            with contextlib.suppress(Exception):  # stored if it can be; the first error is news
                await self.stored()
            raise
        finally:
            await self.drop()

    async def gate(self) -> None:
        """Before a message's data: its predecessor stored, and no stop meanwhile (the stop
        came while this message's envelope was on the wire; abandoned now, it is not sent)."""
        await self.stored()
        if self.shared.should_stop():
            raise _Stopped

    async def stored(self) -> None:
        """Wait until the previous outcome is committed: the gate before the next message's
        data, so this connection never has two accepted messages without a ledger row."""
        if self.unstored is not None:
            unstored, self.unstored = self.unstored, None
            await unstored

    async def drop(self, *, broken: bool = False) -> None:
        """Give up the connection: politely, or at once when it is broken (timed out, lost),
        so a stalled relay costs one timeout per try, not a second one waiting for QUIT."""
        if self.connection is not None:
            connection, self.connection = self.connection, None
            if broken:
                connection.abort()
                return
            with contextlib.suppress(DeliveryError, OSError):
                await connection.close()

    async def deliver(self, item: ComposedMessage) -> Outcome:
        policy = self.shared.policy
        last: DeliveryError | None = None
        for attempt in range(1, policy.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(policy.backoff * 2 ** (attempt - 2))
            self.lent = False
            try:
                return await self.try_once(item, attempt)
            except PermanentDeliveryError as exc:
                if self.lent:  # the next envelope is out: the session cannot be reset
                    await self.drop(broken=True)
                return Outcome(
                    DeliveryStatus.FAILED, str(exc), item.message_id, attempt, code=exc.code
                )
            except TransientDeliveryError as exc:
                last = exc
                if self.lent or isinstance(exc, (ConnectionLostError, TimeoutError)):
                    await self.drop(broken=True)
        retry_at = self.shared.clock() + policy.defer_for
        return Outcome(
            DeliveryStatus.DEFERRED, str(last), item.message_id, policy.attempts, retry_at
        )

    async def try_once(self, item: ComposedMessage, attempt: int) -> Outcome:
        if self.connection is None:
            self.connection = await self.shared.connect()
        # The slot is taken once the session is ready, so the relay sees the messages spaced by
        # the rate, not by the rate plus however long each new connection took to set up.
        await self.shared.limiter.wait()
        reply = await self.connection.send(
            self.shared.sender(item), item.recipient.email, item.data, self.gate, item.body,
            self.ahead,
        )  # fmt: skip
        return Outcome(DeliveryStatus.SENT, reply, item.message_id, attempt)


async def deliver(
    messages: Iterable[ComposedMessage],
    transport: Transport,
    sender: Callable[[ComposedMessage], str],
    policy: DeliveryPolicy,
    record: Recorder,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, int]:
    """Send every message; return counts by outcome. Raises ServerRefusedError to stop early.

    When `should_stop()` turns true (SIGTERM, a lost lease), no new message is taken; one whose
    data is on the wire finishes and is recorded, one whose envelope alone is out is abandoned
    at the gate (before its data), and the rest keep no outcome for the next run.
    """
    limiter = RateLimiter(policy.rate_limit)
    shared = _Shared(transport, sender, policy, record, limiter, clock, should_stop)
    queue: asyncio.Queue[ComposedMessage | None] = asyncio.Queue(maxsize=policy.connections * 4)
    workers = [_Worker(shared, queue) for _ in range(policy.connections)]
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
            for message in messages:
                if should_stop():
                    break
                await queue.put(message)
            for _ in workers:
                await queue.put(None)
    except* ServerRefusedError as group_error:
        raise group_error.exceptions[0] from None
    except* NewsletterError as group_error:  # a store fault while recording, for one
        raise group_error.exceptions[0] from None
    return shared.counts
