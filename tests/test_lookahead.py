"""The next message's envelope written with this message's data (RFC 2920 3.1; `ahead` in
`ports.Connection.send`), on a real socket to a server that notes the wire's order.

What must hold: every message arrives once and whole; the next envelope reaches the server
before it answers this data; a refused data with the next envelope already out drops the
session (RSET cannot undo a DATA the server took), and both messages still get their right
outcome; a stop, a rate limit or a next message that cannot go leaves nothing half-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email

import pytest

from newsletter.compose import ComposedMessage
from newsletter.errors import ConnectionLostError, TransientDeliveryError
from newsletter.mail.pipelining import PipelinedSession
from newsletter.mail.smtp import PipelinedConnection, SmtpTransport
from newsletter.models import DeliveryStatus, Recipient
from newsletter.pool import DeliveryPolicy
from newsletter.pool import deliver as deliver_messages
from newsletter.ports import Connection
from tests.support.clock import FakeClock
from tests.support.pool_harness import SENDER, Recorded, message, run_bounded, send, smtp_config
from tests.support.raw_smtp import Wire, serving

ONE = DeliveryPolicy(connections=1, attempts=2, backoff=0.01)


async def _deliver(wire: Wire, items: list[ComposedMessage], policy: DeliveryPolicy) -> Recorded:
    async with serving(wire) as port:
        recorded = Recorded()
        await send(items, SmtpTransport(smtp_config(port)), policy, recorded)
        await asyncio.sleep(0.05)  # the server notes a dropped connection
        return recorded


def deliver(wire: Wire, items: list[ComposedMessage], policy: DeliveryPolicy = ONE) -> Recorded:
    return run_bounded(_deliver(wire, items, policy))


def addresses(count: int) -> list[str]:
    return [message(n).recipient.email for n in range(count)]


def test_the_next_envelope_reaches_the_server_before_it_answers_the_data() -> None:
    wire = Wire()
    recorded = deliver(wire, [message(n) for n in range(4)])
    a, b, c, d = addresses(4)
    assert wire.events == [
        "connect", f"mail <{SENDER}>", f"rcpt {a}", f"data-end {a}",
        f"mail <{SENDER}>", f"rcpt {b}", f"reply {a} 250", f"data-end {b}",
        f"mail <{SENDER}>", f"rcpt {c}", f"reply {b} 250", f"data-end {c}",
        f"mail <{SENDER}>", f"rcpt {d}", f"reply {c} 250", f"data-end {d}",
        f"reply {d} 250", "quit",
    ]  # fmt: skip
    assert [rcpt for rcpt, _ in wire.stored] == [a, b, c, d]
    for n, (rcpt, data) in enumerate(wire.stored):
        assert data == message(n).data  # whole, byte for byte
        assert email.message_from_bytes(data)["To"] == rcpt
    assert {o.status for o in recorded.outcomes.values()} == {DeliveryStatus.SENT}


@pytest.mark.parametrize(
    ("reply", "status", "copies"),
    [
        ("451 4.3.0 try again", DeliveryStatus.SENT, 1),
        ("554 5.6.0 rejected", DeliveryStatus.FAILED, 0),
    ],
    ids=["transient", "permanent"],
)
def test_data_refused_after_the_next_envelope_went_out_drops_the_session(
    reply: str, status: DeliveryStatus, copies: int
) -> None:
    """The refused message is retried (4xx) or failed (5xx) on a new session; the next one,
    whose envelope was out, is sent there once, and nothing goes out empty or twice."""
    a, b, c = addresses(3)
    wire = Wire(data_reply=lambda rcpt, seen: reply if rcpt == a and seen == 1 else "250 ok")
    recorded = deliver(wire, [message(n) for n in range(3)])
    assert wire.events[:8] == [
        "connect", f"mail <{SENDER}>", f"rcpt {a}", f"data-end {a}",
        f"mail <{SENDER}>", f"rcpt {b}", f"reply {a} {reply[:3]}", f"lost-in-data {b}",
    ]  # fmt: skip
    stored = [rcpt for rcpt, _ in wire.stored]
    assert stored.count(a) == copies and stored.count(b) == 1 and stored.count(c) == 1
    assert wire.lost == [(b, b"")]
    assert recorded.outcomes[a].status is status
    assert recorded.outcomes[b].status is DeliveryStatus.SENT
    assert recorded.outcomes[b].attempts == 1  # on the new session at once, no try lost
    assert recorded.outcomes[c].status is DeliveryStatus.SENT
    assert all(b"QUIT" not in data for _, data in wire.stored)
    assert wire.events.count("connect") == 2


def test_a_refused_recipient_after_the_envelope_went_ahead_keeps_the_session() -> None:
    """Its envelope went out with the data before it: the refusal comes in its own turn, RSET
    clears it as without look-ahead, and the next message goes on the same session."""
    a, b, c = addresses(3)
    wire = Wire(rcpt_reply=lambda rcpt: "550 5.1.1 no such user" if rcpt == b else "250 ok")
    recorded = deliver(wire, [message(n) for n in range(3)])
    assert [rcpt for rcpt, _ in wire.stored] == [a, c]
    assert wire.events.index(f"rcpt {b} refused") < wire.events.index(f"reply {a} 250")
    assert recorded.outcomes[b].status is DeliveryStatus.FAILED
    assert recorded.outcomes[b].code == 550
    assert wire.events.count("connect") == 1 and wire.events[-1] == "quit"


def test_a_stop_leaves_the_envelope_that_went_ahead_unsent_and_without_an_outcome() -> None:
    a, b = addresses(2)
    stop = [False]

    def stop_after_first(count: int) -> None:
        stop[0] = True

    async def scenario() -> tuple[Wire, Recorded]:
        wire = Wire()
        async with serving(wire) as port:
            recorded = Recorded(on_record=stop_after_first)
            items = [message(n) for n in range(4)]
            await send(items, SmtpTransport(smtp_config(port)), ONE, recorded,
                       should_stop=lambda: stop[0])  # fmt: skip
            await asyncio.sleep(0.05)
            return wire, recorded

    wire, recorded = run_bounded(scenario())
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert list(recorded.outcomes) == [a]  # b keeps no outcome: the next run sends it
    assert wire.events[-1] == f"lost-in-data {b}" and "quit" not in wire.events


def test_under_a_rate_limit_each_envelope_waits_for_its_turn() -> None:
    a, b = addresses(2)
    wire = Wire()
    deliver(wire, [message(0), message(1)], policy=DeliveryPolicy(connections=1, rate_limit=50))
    assert wire.events.index(f"reply {a} 250") < wire.events.index(f"rcpt {b}")
    assert [rcpt for rcpt, _ in wire.stored] == [a, b]


def test_a_next_message_that_cannot_go_is_not_written_ahead() -> None:
    """An address outside ASCII to a relay without SMTPUTF8: refused before anything is
    written, when its turn comes, as without look-ahead; the message before it is sent."""
    a = addresses(1)[0]
    wide = "lecteur@exemple.fr".replace("lecteur", "léa")
    data = f"From: daily@ree-news.example.com\r\nTo: {wide}\r\n\r\nbody\r\n".encode()
    odd = ComposedMessage(Recipient(9, wide, "https://x.example/u/9"), "<9@x>", data)
    wire = Wire()
    recorded = deliver(wire, [message(0), odd])
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert recorded.outcomes[wide].status is DeliveryStatus.FAILED
    assert "SMTPUTF8" in recorded.outcomes[wide].detail
    assert wire.events.count(f"mail <{SENDER}>") == 1


def test_a_send_that_is_not_the_message_written_ahead_is_refused_before_its_data() -> None:
    a, b, c = addresses(3)

    async def scenario() -> tuple[Wire, BaseException | None]:
        wire = Wire(hold=0.0)
        async with serving(wire) as port:
            connection = await SmtpTransport(smtp_config(port)).connect()
            assert isinstance(connection, PipelinedConnection)
            assert isinstance(connection.session, PipelinedSession)
            first, second, third = (message(n) for n in range(3))
            await connection.send(SENDER, a, first.data, ahead=lambda: (SENDER, b, second.data))
            error = None
            try:
                await connection.send(SENDER, c, third.data)
            except ConnectionLostError as exc:
                error = exc
            await asyncio.sleep(0.05)
            return wire, error

    wire, error = run_bounded(scenario())
    assert error is not None and "not the one" in str(error)
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert f"rcpt {c}" not in wire.events and wire.events[-1] == f"lost-in-data {b}"


def test_closing_with_an_envelope_out_drops_the_session_instead_of_quitting() -> None:
    """QUIT after a 354 would be read as the message's text."""
    a, b = addresses(2)

    async def scenario() -> Wire:
        wire = Wire(hold=0.0)
        async with serving(wire) as port:
            connection = await SmtpTransport(smtp_config(port)).connect()
            first, second = message(0), message(1)
            await connection.send(SENDER, a, first.data, ahead=lambda: (SENDER, b, second.data))
            await connection.close()
            await asyncio.sleep(0.05)
            return wire

    wire = run_bounded(scenario())
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert wire.events[-1] == f"lost-in-data {b}" and "quit" not in wire.events
    assert wire.lost == [(b, b"")]  # no QUIT typed into its text


def test_a_refused_data_with_the_next_envelope_out_drops_at_once_without_rset() -> None:
    """RSET after the server took the next DATA would be read as that message's text."""
    a, b = addresses(2)

    async def scenario() -> tuple[Wire, bool]:
        wire = Wire(hold=0.0, data_reply=lambda rcpt, seen: "451 4.3.0 later")
        async with serving(wire) as port:
            connection = await SmtpTransport(smtp_config(port)).connect()
            assert isinstance(connection, PipelinedConnection)
            first, second = message(0), message(1)
            with pytest.raises(TransientDeliveryError, match="451"):
                await connection.send(SENDER, a, first.data, ahead=lambda: (SENDER, b, second.data))
            dropped = connection.session.transport.is_closing()
            await asyncio.sleep(0.05)
            return wire, dropped

    wire, dropped = run_bounded(scenario())
    assert dropped and wire.stored == [] and wire.lost == [(b, b"")]


def test_each_envelope_written_ahead_names_its_own_sender() -> None:
    """With VERP every reader has a sender of their own: the one written ahead is the next
    message's, not this one's."""
    wire = Wire()

    async def scenario() -> Recorded:
        async with serving(wire) as port:
            recorded = Recorded()
            await deliver_messages(
                [message(n) for n in range(3)], SmtpTransport(smtp_config(port)),
                lambda item: f"b+{item.recipient.subscriber_id}@bounce.example.com",
                ONE, recorded.record, FakeClock(),
            )  # fmt: skip
            return recorded

    recorded = run_bounded(scenario())
    mails = [event for event in wire.events if event.startswith(("mail", "rcpt"))]
    assert mails == [
        "mail <b+0@bounce.example.com>", "rcpt reader0@example.org",
        "mail <b+1@bounce.example.com>", "rcpt reader1@example.org",
        "mail <b+2@bounce.example.com>", "rcpt reader2@example.org",
    ]  # fmt: skip
    assert wire.events.index("rcpt reader1@example.org") < wire.events.index(
        "reply reader0@example.org 250"
    )
    assert {o.status for o in recorded.outcomes.values()} == {DeliveryStatus.SENT}


def test_three_connections_each_writing_ahead_send_everyone_once() -> None:
    wire = Wire(hold=0.005)
    recorded = deliver(wire, [message(n) for n in range(60)], DeliveryPolicy(connections=3))
    stored = sorted(rcpt for rcpt, _ in wire.stored)
    assert stored == sorted(addresses(60)) and len(recorded.outcomes) == 60
    assert wire.events.count("connect") == 3 and wire.lost == []


def test_a_connection_lost_with_the_next_envelope_out_sends_that_message_on_a_new_one() -> None:
    a, b, c = addresses(3)
    wire = Wire(data_reply=lambda rcpt, seen: "421 4.3.2 closing" if rcpt == a else "250 ok")
    recorded = deliver(wire, [message(n) for n in range(3)])
    stored = [rcpt for rcpt, _ in wire.stored]
    assert stored.count(b) == 1 and stored.count(c) == 1 and a not in stored
    assert recorded.outcomes[a].status is DeliveryStatus.DEFERRED
    assert recorded.outcomes[b].status is DeliveryStatus.SENT


def test_a_cancel_while_an_envelope_waits_for_its_replies_types_nothing_into_it() -> None:
    """Ctrl-C, or another worker's error through the task group, while the server holds the
    replies to an envelope whose DATA it will take: QUIT would be that message's text."""
    a, b = addresses(2)

    async def scenario() -> Wire:
        wire = Wire(hold=1.0, slow_rcpt=b)
        async with serving(wire) as port:
            policy = DeliveryPolicy(connections=1, rate_limit=1000)  # nothing written ahead
            task = asyncio.create_task(
                send([message(0), message(1)], SmtpTransport(smtp_config(port)), policy, Recorded())
            )
            while f"rcpt {b}" not in wire.events:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)
            return wire

    wire = run_bounded(scenario())
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert wire.lost == [(b, b"")] and "quit" not in wire.events


class SwallowsCancel:
    """A transport whose connect loses a cancel, as aiosmtplib's (its wait_for, Python 3.11)
    does when the cancel and the connect's end meet: it hands back a session all the same."""

    def __init__(self, port: int) -> None:
        self.real = SmtpTransport(smtp_config(port))
        self.entered = asyncio.Event()

    async def connect(self) -> Connection:
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.2)
        return await self.real.connect()


def test_a_cancel_lost_in_the_connect_still_ends_the_send_and_sends_nothing() -> None:
    async def scenario() -> tuple[Wire, bool]:
        wire = Wire(hold=0.0)
        async with serving(wire) as port:
            transport = SwallowsCancel(port)
            task = asyncio.create_task(
                send([message(n) for n in range(6)], transport, ONE, Recorded())  # type: ignore[arg-type]
            )
            await transport.entered.wait()
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)
            if not done:  # the bug: it sent on, then waited for ever for the queue's end
                task.cancel()
                await asyncio.wait([task], timeout=5)
            await asyncio.sleep(0.05)
            return wire, bool(done) and task.cancelled()

    wire, ended = run_bounded(scenario())
    assert ended and wire.stored == []


def test_a_session_whose_last_message_was_refused_still_ends_with_quit() -> None:
    """The refusal ended its transaction (RSET): nothing is half-way, so the close is polite."""
    a, b = addresses(2)
    wire = Wire(rcpt_reply=lambda rcpt: "550 5.1.1 no such user" if rcpt == b else "250 ok")
    deliver(wire, [message(0), message(1)])
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert wire.events[-1] == "quit" and wire.lost == []
