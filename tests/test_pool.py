"""The delivery policy against a real aiosmtpd server that refuses the way relays do."""

from __future__ import annotations

import asyncio
import socket

import pytest

from newsletter.compose import ComposedMessage
from newsletter.config import SmtpConfig
from newsletter.errors import ServerRefusedError
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import DeliveryStatus, Outcome, Recipient
from newsletter.pool import DeliveryPolicy, deliver
from tests.support.clock import FakeClock
from tests.support.smtp_server import SmtpServer

CLOCK = FakeClock()

FAST = DeliveryPolicy(connections=2, attempts=3, backoff=0.01)


def smtp_config(port: int, **overrides: object) -> SmtpConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": "",
        "password": "",
        "timeout": 5.0,
        "connections": 2,
        "rate_limit": 0.0,
    }
    values.update(overrides)
    return SmtpConfig(**values)  # type: ignore[arg-type]


def message(index: int, domain: str = "example.org") -> ComposedMessage:
    address = f"reader{index}@{domain}"
    data = (
        f"From: daily@ree-news.example.com\r\nTo: {address}\r\nSubject: test {index}\r\n"
        f"Message-ID: <{index}@ree-news.example.com>\r\n\r\n.dot first\r\nbody {index}\r\n"
    ).encode()
    recipient = Recipient(index, address, f"https://x.example/u/{index}")
    return ComposedMessage(recipient, f"<{index}@ree-news.example.com>", data)


def run(
    messages: list[ComposedMessage], port: int, policy: DeliveryPolicy = FAST
) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}

    async def record(item: ComposedMessage, outcome: Outcome) -> None:
        assert item.recipient.email not in outcomes, "recorded twice"
        outcomes[item.recipient.email] = outcome

    transport = SmtpTransport(smtp_config(port))
    asyncio.run(
        deliver(messages, transport, lambda _: "bounce@ree-news.example.com", policy, record, CLOCK)
    )
    return outcomes


def test_every_message_arrives_once_byte_exact() -> None:
    items = [message(i) for i in range(30)]
    with SmtpServer() as server:
        outcomes = run(items, server.port)
    assert {o.status for o in outcomes.values()} == {DeliveryStatus.SENT}
    received = {m.rcpt_tos[0]: m for m in server.messages}
    assert len(server.messages) == 30 == len(received)
    for item in items:
        got = received[item.recipient.email]
        assert got.data.replace(b"\r\n", b"\n") == item.data.replace(b"\r\n", b"\n")
        assert got.mail_from == "bounce@ree-news.example.com"
        assert outcomes[item.recipient.email].message_id == item.message_id
        assert outcomes[item.recipient.email].detail.startswith("2.0.0")


def test_permanent_refusal_fails_one_address_and_the_rest_go_out() -> None:
    with SmtpServer() as server:

        def refuse(phase: str, address: str) -> str | None:
            if phase == "rcpt" and address.startswith("reader3@"):
                return "550 5.1.1 No such user"
            return None

        server.handler.behaviour = refuse
        outcomes = run([message(i) for i in range(6)], server.port)
    assert outcomes["reader3@example.org"].status is DeliveryStatus.FAILED
    assert "550 5.1.1" in outcomes["reader3@example.org"].detail
    assert len(server.messages) == 5
    assert all(o.status is DeliveryStatus.SENT for a, o in outcomes.items() if "3@" not in a)


def test_transient_refusal_is_retried_within_the_run() -> None:
    tries: dict[str, int] = {}
    with SmtpServer() as server:

        def greylist(phase: str, address: str) -> str | None:
            if phase != "rcpt":
                return None
            tries[address] = tries.get(address, 0) + 1
            return "451 4.7.1 Greylisted, try again" if tries[address] == 1 else None

        server.handler.behaviour = greylist
        outcomes = run([message(i) for i in range(4)], server.port)
    assert all(o.status is DeliveryStatus.SENT and o.attempts == 2 for o in outcomes.values())
    assert len(server.messages) == 4


def test_persistent_4xx_is_deferred_not_lost() -> None:
    with SmtpServer() as server:
        server.handler.behaviour = lambda phase, _: (
            "452 4.2.2 Mailbox full" if phase == "rcpt" else None
        )
        outcomes = run([message(1)], server.port)
    outcome = outcomes["reader1@example.org"]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert outcome.next_attempt is not None and "452" in outcome.detail
    assert server.messages == []


def test_nobody_listening_stops_the_run_with_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcomes: list[Outcome] = []

    async def record(_: ComposedMessage, outcome: Outcome) -> None:
        outcomes.append(outcome)

    policy = DeliveryPolicy(connections=2, attempts=3, backoff=0.01, max_connect_failures=3)
    transport = SmtpTransport(smtp_config(port))
    with pytest.raises(ServerRefusedError, match="connection attempts failed"):
        asyncio.run(
            deliver(
                [message(i) for i in range(20)],
                transport,
                lambda _: "b@x.org",
                policy,
                record,
                CLOCK,
            )
        )
    assert len(outcomes) < 20


def test_connections_are_persistent_and_their_number_is_the_configured_one() -> None:
    with SmtpServer() as server:
        outcomes = run([message(i) for i in range(30)], server.port, FAST)
        sessions = len(server.sessions)
    assert len(outcomes) == 30
    assert sessions == FAST.connections  # 30 messages, one session per worker, reused


def test_rate_limit_spaces_messages_over_all_connections() -> None:
    import time

    policy = DeliveryPolicy(connections=3, rate_limit=20.0, backoff=0.01)
    with SmtpServer() as server:
        started = time.monotonic()
        run([message(i) for i in range(7)], server.port, policy)
        elapsed = time.monotonic() - started
    assert len(server.messages) == 7
    assert elapsed >= 6 / 20.0  # the 7th message cannot start before 6 intervals have passed


@pytest.mark.parametrize("pipelining", [True, False])
def test_both_session_kinds_classify_refusals_alike(pipelining: bool) -> None:
    """With PIPELINING the envelope goes out in one write; without, command by command."""
    from newsletter.mail.smtp import PipelinedConnection, SmtpConnection
    from tests.support.smtp_server import DROP

    tries: dict[tuple[str, str], int] = {}

    def relay(phase: str, address: str) -> str | None:
        tries[phase, address] = tries.get((phase, address), 0) + 1
        first = tries[phase, address] == 1
        if address.startswith("reader1@") and phase == "rcpt":
            return "550 5.1.1 No such user"
        if address.startswith("reader2@") and phase == "rcpt" and first:
            return "451 4.7.1 Greylisted"
        if address.startswith("reader3@") and phase == "data" and first:
            return DROP
        if address.startswith("reader4@") and phase == "data":
            return "554 5.6.0 Message content rejected"
        return None

    with SmtpServer() as server:
        server.handler.pipelining = pipelining
        server.handler.behaviour = relay

        async def kind() -> type:
            connection = await SmtpTransport(smtp_config(server.port)).connect()
            await connection.close()
            return type(connection)

        assert asyncio.run(kind()) is (PipelinedConnection if pipelining else SmtpConnection)
        outcomes = run([message(i) for i in range(6)], server.port)
    status = {address.split("@")[0]: o.status for address, o in outcomes.items()}
    assert status == {
        "reader0": DeliveryStatus.SENT,
        "reader1": DeliveryStatus.FAILED,
        "reader2": DeliveryStatus.SENT,
        "reader3": DeliveryStatus.SENT,
        "reader4": DeliveryStatus.FAILED,
        "reader5": DeliveryStatus.SENT,
    }
    assert "550 5.1.1" in outcomes["reader1@example.org"].detail
    assert "554 5.6.0" in outcomes["reader4@example.org"].detail
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [
        f"reader{i}@example.org" for i in (0, 2, 3, 5)
    ]


def test_the_ledger_writer_survives_a_waiter_cancelled_before_its_write_fails() -> None:
    """A store fault while a worker was being cancelled must not crash the writer itself."""
    from newsletter.errors import StoreError
    from newsletter.ledger_writer import Rows, ledger_writer

    calls: list[int] = []

    def failing(rows: Rows) -> None:
        calls.append(len(rows))
        raise StoreError("the store failed: connection lost")

    async def scenario() -> None:
        async with ledger_writer(failing) as writer:
            outcome = Outcome(DeliveryStatus.SENT, "250 ok")
            cancelled = asyncio.ensure_future(writer.record(1, outcome))
            waiting = asyncio.ensure_future(writer.record(2, outcome))
            await asyncio.sleep(0)
            cancelled.cancel()
            with pytest.raises(StoreError):
                await waiting
            with pytest.raises(StoreError):  # the writer is still alive for the next one
                await asyncio.wait_for(writer.record(3, outcome), 5)

    asyncio.run(asyncio.wait_for(scenario(), 30))  # a dead writer fails, not hangs
    assert sum(calls) == 3
