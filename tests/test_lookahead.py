"""The next message's envelope written with this message's data (RFC 2920 3.1; `ahead` in
`ports.Connection.send`), on a real socket to a server that notes the wire's order.

What must hold: every message arrives once and whole; the next envelope reaches the server
before it answers this data; a refused data with the next envelope already out drops the
session (RSET cannot undo a DATA the server took), and both messages still get their right
outcome; a stop, a rate limit or a next message that cannot go leaves nothing half-sent.
"""

from __future__ import annotations

import asyncio
import email

import pytest

from newsletter.compose import ComposedMessage
from newsletter.errors import ConnectionLostError, TransientDeliveryError
from newsletter.mail.pipelining import PipelinedSession
from newsletter.mail.smtp import PipelinedConnection, SmtpTransport
from newsletter.models import DeliveryStatus, Recipient
from newsletter.pool import DeliveryPolicy
from tests.support.pool_harness import SENDER, Recorded, message, run_bounded, send, smtp_config
from tests.support.raw_smtp import Wire, serve

ONE = DeliveryPolicy(connections=1, attempts=2, backoff=0.01)


async def _deliver(wire: Wire, items: list[ComposedMessage], policy: DeliveryPolicy) -> Recorded:
    server = await serve(wire)
    try:
        port = server.sockets[0].getsockname()[1]
        recorded = Recorded()
        await send(items, SmtpTransport(smtp_config(port)), policy, recorded)
        await asyncio.sleep(0.05)  # the server notes a dropped connection
        return recorded
    finally:
        server.close()
        await server.wait_closed()


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
        server = await serve(wire)
        try:
            port = server.sockets[0].getsockname()[1]
            recorded = Recorded(on_record=stop_after_first)
            items = [message(n) for n in range(4)]
            await send(items, SmtpTransport(smtp_config(port)), ONE, recorded,
                       should_stop=lambda: stop[0])  # fmt: skip
            await asyncio.sleep(0.05)
            return wire, recorded
        finally:
            server.close()
            await server.wait_closed()

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
        server = await serve(wire)
        port = server.sockets[0].getsockname()[1]
        try:
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
        finally:
            server.close()
            await server.wait_closed()

    wire, error = run_bounded(scenario())
    assert error is not None and "not the one" in str(error)
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert f"rcpt {c}" not in wire.events and wire.events[-1] == f"lost-in-data {b}"


def test_closing_with_an_envelope_out_drops_the_session_instead_of_quitting() -> None:
    """QUIT after a 354 would be read as the message's text."""
    a, b = addresses(2)

    async def scenario() -> Wire:
        wire = Wire(hold=0.0)
        server = await serve(wire)
        port = server.sockets[0].getsockname()[1]
        try:
            connection = await SmtpTransport(smtp_config(port)).connect()
            first, second = message(0), message(1)
            await connection.send(SENDER, a, first.data, ahead=lambda: (SENDER, b, second.data))
            await connection.close()
            await asyncio.sleep(0.05)
            return wire
        finally:
            server.close()
            await server.wait_closed()

    wire = run_bounded(scenario())
    assert [rcpt for rcpt, _ in wire.stored] == [a]
    assert wire.events[-1] == f"lost-in-data {b}" and "quit" not in wire.events
    assert wire.lost == [(b, b"")]  # no QUIT typed into its text


def test_a_refused_data_with_the_next_envelope_out_drops_at_once_without_rset() -> None:
    """RSET after the server took the next DATA would be read as that message's text."""
    a, b = addresses(2)

    async def scenario() -> tuple[Wire, bool]:
        wire = Wire(hold=0.0, data_reply=lambda rcpt, seen: "451 4.3.0 later")
        server = await serve(wire)
        port = server.sockets[0].getsockname()[1]
        try:
            connection = await SmtpTransport(smtp_config(port)).connect()
            assert isinstance(connection, PipelinedConnection)
            first, second = message(0), message(1)
            with pytest.raises(TransientDeliveryError, match="451"):
                await connection.send(SENDER, a, first.data, ahead=lambda: (SENDER, b, second.data))
            dropped = connection.session.transport.is_closing()
            await asyncio.sleep(0.05)
            return wire, dropped
        finally:
            server.close()
            await server.wait_closed()

    wire, dropped = run_bounded(scenario())
    assert dropped and wire.stored == [] and wire.lost == [(b, b"")]
