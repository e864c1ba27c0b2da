"""After a stop (SIGTERM, a lost lease) no worker sends another queued message.

What counts is what a real aiosmtpd server received: the messages whose data was on the wire when
the stop came finish and are recorded; one whose envelope alone was out is dropped before its
data; the ones waiting in the queue are neither sent nor recorded (the next run sends them), and
the pool stops taking messages from the audience.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from itertools import islice

import pytest

from newsletter import lease
from newsletter.compose import ComposedMessage
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import DeliveryStatus, Outcome
from newsletter.pool import DeliveryPolicy, deliver
from newsletter.store import SqlStore
from tests.support.clock import T0, FakeClock
from tests.support.lease_harness import VirtualTime, issue_with_readers
from tests.support.pool_harness import SENDER, Recorded, message, run_bounded, send, smtp_config
from tests.support.smtp_server import SmtpServer

OTHER = "mail3.elsewhere.example:5151:beef01"


class Audience:
    """Messages handed out one at a time, counting how many the pool took."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0

    def __iter__(self) -> Iterator[ComposedMessage]:
        for index in range(self.size):
            self.taken += 1
            yield message(index)


class SignalAfterThree(Recorded):
    """Records; while the third outcome is recorded, SIGTERM arrives and is handled."""

    def __init__(self, stop: asyncio.Event) -> None:
        super().__init__()
        self.stop = stop

    async def record(self, item: ComposedMessage, outcome: Outcome) -> None:
        await super().record(item, outcome)
        if len(self.outcomes) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(self.stop.wait(), 5)


def test_after_sigterm_no_queued_message_is_sent() -> None:
    """A real SIGTERM to this process, turned into the stop flag the way `send` does it."""
    audience = Audience(40)
    with SmtpServer() as server:

        async def scenario() -> tuple[Recorded, dict[str, int]]:
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            recorded = SignalAfterThree(stop)
            try:
                policy = DeliveryPolicy(connections=1)
                transport = SmtpTransport(smtp_config(server.port))
                counts = await send(list(audience), transport, policy, recorded, None, stop.is_set)
            finally:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            return recorded, counts

        recorded, counts = run_bounded(scenario())
    assert [m.rcpt_tos[0] for m in server.messages] == [f"reader{i}@example.org" for i in range(3)]
    assert list(recorded.outcomes) == [f"reader{i}@example.org" for i in range(3)]
    assert counts == {DeliveryStatus.SENT: 3}


@pytest.mark.parametrize("connections", [1, 3])
def test_a_stop_leaves_queued_messages_unsent_and_unrecorded(connections: int) -> None:
    audience = Audience(200)
    stopped = False

    def stop_after_five(recorded_so_far: int) -> None:
        nonlocal stopped
        stopped = stopped or recorded_so_far == 5

    with SmtpServer() as server:
        server.handler.delay = 0.002  # every worker has a message on the wire at the stop
        recorded = Recorded(on_record=stop_after_five)
        policy = DeliveryPolicy(connections=connections)
        transport = SmtpTransport(smtp_config(server.port))
        counts = run_bounded(send(audience, transport, policy, recorded, None, lambda: stopped))
    received = [m.rcpt_tos[0] for m in server.messages]
    # The five, plus at most one already on the wire at each other worker: all recorded.
    assert 5 <= len(received) <= 5 + connections - 1
    assert sorted(received) == sorted(recorded.outcomes)
    assert sum(counts.values()) == len(received)
    # The pool stopped taking from the audience: at most what fitted in its queue meanwhile,
    # and one message per worker taken early for its connection's next envelope.
    queue_room = connections * 4
    assert audience.taken <= len(received) + queue_room + 2 * connections + 1
    assert audience.taken < audience.size


def test_a_stop_before_the_first_message_opens_no_session_and_sends_nothing() -> None:
    audience = Audience(10)
    with SmtpServer() as server:
        recorded = Recorded()
        transport = SmtpTransport(smtp_config(server.port))
        counts = run_bounded(
            send(audience, transport, DeliveryPolicy(connections=2), recorded, None, lambda: True)
        )
        sessions = len(server.sessions)
    assert server.messages == [] and recorded.outcomes == {} and counts == {}
    assert sessions == 0
    assert audience.taken <= 1  # the one in hand when the stop was seen, dropped unsent


def test_after_the_lease_is_lost_no_queued_message_is_sent(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process takes the batch over while message 3 is recorded; the renewal after
    that finds the lease gone, and the pool sends none of the readers still queued."""
    clock = FakeClock(T0)
    virtual = VirtualTime(clock)
    monkeypatch.setattr(lease, "asyncio", virtual)
    issue_id, ids = issue_with_readers(store, 30)
    owner = lease.new_owner()
    claims = lease.Claims(store, issue_id, owner, clock, size=100)
    by_address: dict[str, int] = {}

    def messages() -> Iterator[ComposedMessage]:
        for reader in islice(claims.readers(lambda: None), 100):
            item = message(reader.id)
            by_address[item.recipient.email] = reader.id
            yield item

    with SmtpServer() as server:

        async def scenario() -> dict[str, int]:
            async with lease.renewing(store, owner, clock, claims.held.values) as lost:

                async def record(item: ComposedMessage, outcome: Outcome) -> None:
                    reader = by_address[item.recipient.email]
                    store.record_outcome(issue_id, reader, outcome, clock())
                    claims.settled(reader)
                    if reader == ids[2]:
                        until = clock() + lease.LEASE_TTL
                        taken = store.claim_batch(issue_id, OTHER, until, clock(), [owner])
                        assert taken is not None
                        await virtual.elapse()  # the next renewal comes while it is recorded
                        assert lost.is_set()

                policy = DeliveryPolicy(connections=1)
                transport = SmtpTransport(smtp_config(server.port))
                return await deliver(
                    messages(), transport, lambda _: SENDER, policy, record, clock, lost.is_set
                )

        counts = run_bounded(scenario())
    received = [m.rcpt_tos[0] for m in server.messages]
    assert received == [f"reader{i}@example.org" for i in ids[:3]]
    assert counts == {DeliveryStatus.SENT: 3}
    assert store.outcome_counts(issue_id) == {DeliveryStatus.SENT.value: 3}
