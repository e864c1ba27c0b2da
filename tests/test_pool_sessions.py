"""How the pool treats its SMTP sessions and its queue, seen from a real aiosmtpd server: a run
ends each session with QUIT, a try that timed out is cut off at once (so the relay cannot finish
it behind our back while a retry sends a second copy), the queue holds a fixed few messages per
connection, and a store fault while recording stops the run with the store's own error.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.compose import ComposedMessage
from newsletter.config import SmtpConfig
from newsletter.errors import StoreError
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import DeliveryStatus, Outcome
from newsletter.pool import DeliveryPolicy
from tests.support.pool_harness import Recorded, message, run, run_bounded, send, smtp_config
from tests.support.smtp_server import RecordingHandler, SmtpServer


class CountingQuits(RecordingHandler):
    quits: int = 0

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


class StallingQuit(RecordingHandler):
    """Never answers QUIT: the client's polite goodbye hangs until something stops it."""

    quit_seen: threading.Event

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quit_seen.set()
        await asyncio.sleep(3600)
        return "221 Bye"


class SlowFirstData(RecordingHandler):
    """The first DATA of each address takes `slow` seconds: longer than the client waits."""

    slow: float = 0.0
    seen: set[str]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0]
        if rcpt not in self.seen:
            self.seen.add(rcpt)
            await asyncio.sleep(self.slow)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_run_ends_every_session_politely_with_quit(pipelining: bool) -> None:
    handler = CountingQuits()
    handler.pipelining = pipelining
    with SmtpServer(handler) as server:
        policy = DeliveryPolicy(connections=3)
        run([message(i) for i in range(9)], SmtpTransport(smtp_config(server.port)), policy)
        sessions = len(server.sessions)
    assert len(server.messages) == 9
    assert handler.quits == sessions == 3


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_timed_out_try_is_cut_off_so_the_relay_cannot_finish_it_behind_our_back(
    pipelining: bool,
) -> None:
    """The client waits 0.8 s; the relay needs 1.4 s for the first copy. Hanging up at once
    makes the relay drop that copy: the reader gets exactly one, from the retry. Waiting
    politely for a QUIT reply (another 0.8 s) would keep the line open for a second copy."""
    handler = SlowFirstData()
    handler.slow, handler.seen, handler.pipelining = 1.4, set(), pipelining
    config = SmtpConfig(
        host="127.0.0.1",
        port=0,
        tls="none",
        username="",
        password="",
        timeout=0.8,
        connections=1,
        rate_limit=0.0,
    )
    with SmtpServer(handler) as server:
        config = SmtpConfig(**{**config.__dict__, "port": server.port})
        recorded = run([message(1)], SmtpTransport(config), DeliveryPolicy(connections=1))
        run_bounded(asyncio.sleep(0.5))  # past the moment the slow copy would have finished
        received = [m.rcpt_tos[0] for m in server.messages]
    outcome = recorded.outcomes["reader1@example.org"]
    assert outcome.status is DeliveryStatus.SENT and outcome.attempts == 2
    assert received == ["reader1@example.org"]


@pytest.mark.parametrize("connections", [1, 3])
def test_the_pool_takes_at_most_four_messages_per_connection_ahead_of_the_workers(
    connections: int,
) -> None:
    """Memory stays flat however long the list: by the first outcome the pool has taken one
    message per worker, filled its queue (four per connection) and holds one waiting for room;
    the worker of that outcome has also taken its next message early for its connection's next
    envelope, and each of the others may have (`ports.Connection.send`'s `ahead`)."""
    taken = 0
    taken_at_first_outcome: list[int] = []

    def audience() -> Iterator[ComposedMessage]:
        nonlocal taken
        for index in range(30):
            taken += 1
            yield message(index)

    def note(recorded_so_far: int) -> None:
        if recorded_so_far == 1:
            taken_at_first_outcome.append(taken)

    with SmtpServer() as server:
        recorded = Recorded(on_record=note)
        transport = SmtpTransport(smtp_config(server.port))
        run_bounded(send(audience(), transport, DeliveryPolicy(connections=connections), recorded))
    assert len(server.messages) == 30
    (at_first,) = taken_at_first_outcome
    assert 5 * connections + 2 <= at_first <= 6 * connections + 1


def test_a_store_fault_while_recording_stops_the_run_with_the_stores_error() -> None:
    class FailingLedger(Recorded):
        async def record(self, item: ComposedMessage, outcome: Outcome) -> None:
            if len(self.outcomes) == 2:
                raise StoreError("the store failed: disk full")
            await super().record(item, outcome)

    with SmtpServer() as server:
        recorded = FailingLedger()
        transport = SmtpTransport(smtp_config(server.port))
        items = [message(i) for i in range(20)]
        with pytest.raises(StoreError, match=r"^the store failed: disk full$"):
            run_bounded(send(items, transport, DeliveryPolicy(connections=1), recorded))
    # The third message was accepted but could not be recorded; nothing after it was sent.
    assert [m.rcpt_tos[0] for m in server.messages] == [f"reader{i}@example.org" for i in range(3)]
    assert list(recorded.outcomes) == [f"reader{i}@example.org" for i in range(2)]


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_forced_stop_while_a_session_says_goodbye_cancels_the_send_cleanly(
    pipelining: bool,
) -> None:
    """A second SIGTERM cancels the send; a worker waiting for the QUIT reply then ends with
    the cancellation itself, not with some other error out of its clean-up."""
    handler = StallingQuit()
    handler.quit_seen, handler.pipelining = threading.Event(), pipelining
    with SmtpServer(handler) as server:
        transport = SmtpTransport(smtp_config(server.port))

        async def scenario() -> None:
            sending = asyncio.ensure_future(
                send([message(1)], transport, DeliveryPolicy(connections=1), Recorded())
            )
            while not handler.quit_seen.is_set():
                await asyncio.sleep(0.01)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending

        run_bounded(scenario())
        assert [m.rcpt_tos[0] for m in server.messages] == ["reader1@example.org"]
