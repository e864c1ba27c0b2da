"""The gate before each message's data, on a real server and a real store.

A worker hands its outcome to the ledger and goes on with the next reader's envelope; only the
next message's data waits for that outcome's commit. So the envelope's round trip overlaps the
commit, while a connection never has two accepted messages without a ledger row (the duplicate
bound after a crash). Both session kinds: with PIPELINING and command by command.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.compose import ComposedMessage
from newsletter.errors import ServerRefusedError, StoreError
from newsletter.ledger_writer import Receipt, Rows, Write, ledger_writer
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import Outcome, Recipient
from newsletter.pool import DeliveryPolicy, deliver
from newsletter.ports import LedgerWrite
from newsletter.store import SqlStore
from tests.support.clock import T0, FakeClock
from tests.support.config import closed_port
from tests.support.lease_harness import issue_with_readers
from tests.support.pool_harness import (
    SENDER,
    ScriptedTransport,
    message,
    run_bounded,
    smtp_config,
)
from tests.support.smtp_server import DROP, RecordingHandler, SmtpServer


class Events:
    """What the server saw and what the ledger committed, in one order (the server's thread
    and the ledger's each append; a causal chain between them keeps that order true)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int]] = []

    def add(self, kind: str, subscriber_id: int) -> None:
        with self.lock:
            self.seen.append((kind, subscriber_id))

    def at(self, kind: str, subscriber_id: int) -> int:
        return self.seen.index((kind, subscriber_id))


class Watching(RecordingHandler):
    """Notes each RCPT and each complete DATA by the reader's subscriber id."""

    def __init__(self, events: Events, ids: dict[str, int]) -> None:
        super().__init__()
        self.events = events
        self.ids = ids

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.events.add("rcpt", self.ids[address])
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.events.add("data", self.ids[envelope.rcpt_tos[0]])
        return await super().handle_DATA(server, session, envelope)


def watching(items: list[ComposedMessage], pipelining: bool) -> tuple[Events, Watching]:
    """A server handler noting these readers' RCPT and DATA, offering PIPELINING or not."""
    events = Events()
    handler = Watching(events, {m.recipient.email: m.recipient.subscriber_id for m in items})
    handler.pipelining = pipelining
    return events, handler


def readers_messages(ids: list[int]) -> list[ComposedMessage]:
    out = []
    for index, subscriber_id in enumerate(ids):
        made = message(index)
        recipient = Recipient(subscriber_id, made.recipient.email, made.recipient.unsubscribe_url)
        out.append(ComposedMessage(recipient, made.message_id, made.data))
    return out


def committing(store: SqlStore, events: Events, fail_at: int = 0) -> Callable[[LedgerWrite], Write]:
    """The store's ledger write, noting each committed row; write number `fail_at` fails."""
    writes = 0

    def bind(write_rows: LedgerWrite) -> Write:
        async def write(rows: Rows) -> None:
            nonlocal writes
            writes += 1
            if writes == fail_at:
                raise StoreError("the store failed: disk full")
            done = write_rows(rows, T0)
            if done is not None:  # a server's commit
                await done
            for subscriber_id, _ in rows:
                events.add("commit", subscriber_id)

        return write

    return bind


async def send_through_ledger(
    store: SqlStore,
    issue_id: int,
    items: list[ComposedMessage],
    port: int,
    bind: Callable[[LedgerWrite], Write],
) -> dict[str, int]:
    async with (
        store.ledger_session(issue_id) as write_rows,
        ledger_writer(bind(write_rows)) as writer,
    ):

        def record(item: ComposedMessage, outcome: Outcome) -> Receipt:
            return writer.record(item.recipient.subscriber_id, outcome)

        config = smtp_config(port)
        return await deliver(
            items,
            SmtpTransport(config),
            lambda _: SENDER,
            DeliveryPolicy(connections=1),
            record,
            FakeClock(),
        )


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_next_envelope_overlaps_the_commit_and_its_data_waits_for_it(
    store: SqlStore, pipelining: bool
) -> None:
    issue_id, ids = issue_with_readers(store, 6)
    items = readers_messages(ids)
    events, handler = watching(items, pipelining)
    with SmtpServer(handler) as server:
        counts = run_bounded(
            send_through_ledger(store, issue_id, items, server.port, committing(store, events))
        )
    assert counts == {"sent": 6} and len(server.messages) == 6
    assert store.outcome_counts(issue_id) == {"sent": 6}
    for previous, current in itertools.pairwise(ids):
        # the envelope went out before the previous outcome was committed...
        assert events.at("rcpt", current) < events.at("commit", previous)
        # ...and the data only after it
        assert events.at("commit", previous) < events.at("data", current)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_commit_that_fails_at_the_gate_stops_the_send_before_that_data_goes_out(
    store: SqlStore, pipelining: bool
) -> None:
    """The session, half-way through DATA, is dropped at once: the run does not wait out the
    relay's timeout (longer than this test's guard) trying to QUIT inside the message."""
    issue_id, ids = issue_with_readers(store, 5)
    items = readers_messages(ids)
    events, handler = watching(items, pipelining)
    with SmtpServer(handler) as server:

        async def scenario() -> dict[str, int]:
            with pytest.raises(StoreError, match="disk full"):
                await send_through_ledger(
                    store, issue_id, items, server.port, committing(store, events, fail_at=2)
                )
            return store.outcome_counts(issue_id)

        stored = run_bounded(scenario(), seconds=4.0)
        received = [m.rcpt_tos[0] for m in server.messages]
    # write 1 held the first outcome; write 2 (the second) failed at the third message's gate
    assert stored == {"sent": 1}
    assert received == [items[0].recipient.email, items[1].recipient.email]


def gated_send(
    items: list[ComposedMessage], port: int, record: Callable[..., Any], stop: Callable[[], bool]
) -> Coroutine[Any, Any, dict[str, int]]:
    return deliver(
        items,
        SmtpTransport(smtp_config(port)),
        lambda _: SENDER,
        DeliveryPolicy(connections=1),
        record,
        FakeClock(),
        stop,
    )


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_stop_seen_at_the_gate_drops_that_message_before_its_data(pipelining: bool) -> None:
    """The stop comes while the first outcome is being stored, the second envelope already
    out: the second reader gets nothing and no outcome (the next run sends it)."""
    items = readers_messages(list(range(1, 6)))
    events, handler = watching(items, pipelining)
    stopped = False
    recorded: list[int] = []

    def record(item: ComposedMessage, outcome: Outcome) -> Awaitable[None]:
        async def stored() -> None:
            nonlocal stopped
            recorded.append(item.recipient.subscriber_id)
            stopped = True

        return stored()

    with SmtpServer(handler) as server:
        counts = run_bounded(gated_send(items, server.port, record, lambda: stopped), 4.0)
        received = [m.rcpt_tos[0] for m in server.messages]
    assert counts == {"sent": 1} and recorded == [1]
    assert received == [items[0].recipient.email]
    assert ("rcpt", 2) in events.seen and ("data", 2) not in events.seen


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_send_cancelled_at_the_gate_drops_the_half_way_session_at_once(pipelining: bool) -> None:
    """A second Ctrl-C while a worker waits for a commit before a message's data: the session
    is aborted, not sent QUIT inside the message (that would wait out the relay's timeout,
    longer than this test's guard), and the message is not delivered."""
    items = readers_messages(list(range(1, 4)))
    events, handler = watching(items, pipelining)

    async def never_stored() -> None:  # a commit that never ends
        await asyncio.Event().wait()

    def record(item: ComposedMessage, outcome: Outcome) -> Awaitable[None]:
        return never_stored()

    with SmtpServer(handler) as server:

        async def scenario() -> None:
            sending = asyncio.ensure_future(gated_send(items, server.port, record, lambda: False))
            while ("rcpt", 2) not in events.seen:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # the worker is at the gate now
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending

        run_bounded(scenario(), 4.0)
        received = [m.rcpt_tos[0] for m in server.messages]
    assert received == [items[0].recipient.email]


def test_the_first_error_goes_up_when_the_last_commit_fails_too() -> None:
    """The relay is lost for good after the first message, and storing that message's outcome
    fails as well: the run reports the relay, the error that stopped it."""
    items = readers_messages(list(range(1, 4)))
    awaited: list[int] = []

    async def failing_store(subscriber_id: int) -> None:
        awaited.append(subscriber_id)
        raise StoreError("the store failed: disk full")

    def record(item: ComposedMessage, outcome: Outcome) -> Awaitable[None]:
        return failing_store(item.recipient.subscriber_id)

    def drop_the_second(phase: str, address: str) -> str | None:
        return DROP if address == items[1].recipient.email else None

    policy = DeliveryPolicy(connections=1, max_connect_failures=1, backoff=0.0)
    with SmtpServer() as server:
        server.handler.behaviour = drop_the_second
        transport = ScriptedTransport([server.port, closed_port()])
        sending = deliver(items, transport, lambda _: SENDER, policy, record, FakeClock())
        with pytest.raises(ServerRefusedError):
            run_bounded(sending, 4.0)
        received = [m.rcpt_tos[0] for m in server.messages]
    assert received == [items[0].recipient.email] and awaited == [1]
