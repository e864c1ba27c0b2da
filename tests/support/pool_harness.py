"""Shared pieces for the delivery-pool tests: messages, a real SMTP transport, a run helper,
and `LoopSleeps`, which notes the sleeps the pool asks the event loop for (its schedule).

`ScriptedTransport` is the real `SmtpTransport` pointed, connect by connect, at the ports of a
script: a live aiosmtpd server or a port nothing listens on. That gives tests failed connects in
the exact order they need, with real sockets and real SMTP sessions (no fake connections).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from newsletter.clock import Clock
from newsletter.compose import ComposedMessage
from newsletter.config import SmtpConfig
from newsletter.mail.smtp import PipelinedConnection, SmtpConnection, SmtpTransport
from newsletter.models import Outcome, Recipient
from newsletter.pool import DeliveryPolicy, deliver
from tests.support.clock import FakeClock

SENDER = "bounce@ree-news.example.com"
GUARD = 30.0  # seconds: a scenario that hangs (a deadlocked pool, a dead writer) fails instead

T = TypeVar("T")


def run_bounded(scenario: Coroutine[Any, Any, T], seconds: float = GUARD) -> T:
    """`asyncio.run`, but a scenario still running after `seconds` fails with TimeoutError."""
    return asyncio.run(asyncio.wait_for(scenario, seconds))


def smtp_config(port: int) -> SmtpConfig:
    return SmtpConfig(
        host="127.0.0.1",
        port=port,
        tls="none",
        username="",
        password="",
        timeout=5.0,
        connections=1,
        rate_limit=0.0,
    )


def message(index: int) -> ComposedMessage:
    address = f"reader{index}@example.org"
    data = (
        f"From: daily@ree-news.example.com\r\nTo: {address}\r\nSubject: test {index}\r\n"
        f"Message-ID: <{index}@ree-news.example.com>\r\n\r\nbody {index}\r\n"
    ).encode()
    recipient = Recipient(index, address, f"https://x.example/u/{index}")
    return ComposedMessage(recipient, f"<{index}@ree-news.example.com>", data)


@dataclass
class ScriptedTransport:
    """Connect number k goes to `ports[k]` (the last port once the script runs out)."""

    ports: Sequence[int]
    connects: int = 0

    async def connect(self) -> SmtpConnection | PipelinedConnection:
        port = self.ports[min(self.connects, len(self.ports) - 1)]
        self.connects += 1
        return await SmtpTransport(smtp_config(port)).connect()


@dataclass
class Recorded:
    """Outcomes in the order the pool handed them over, each address at most once."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    on_record: Callable[[int], None] = lambda _: None

    def record(self, item: ComposedMessage, outcome: Outcome) -> Awaitable[None]:
        """Noted when handed over, as the real recorder takes it (`pool.Recorder`)."""
        assert item.recipient.email not in self.outcomes, "recorded twice"
        self.outcomes[item.recipient.email] = outcome
        self.on_record(len(self.outcomes))
        return asyncio.sleep(0)


async def send(
    items: Iterable[ComposedMessage],
    transport: ScriptedTransport | SmtpTransport,
    policy: DeliveryPolicy,
    recorded: Recorded,
    clock: Clock | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, int]:
    return await deliver(
        items,
        transport,
        lambda _: SENDER,
        policy,
        recorded.record,
        clock or FakeClock(),
        should_stop,
    )


def run(
    items: list[ComposedMessage],
    transport: ScriptedTransport | SmtpTransport,
    policy: DeliveryPolicy,
    recorded: Recorded | None = None,
    clock: Clock | None = None,
) -> Recorded:
    recorded = recorded or Recorded()
    run_bounded(send(items, transport, policy, recorded, clock))
    return recorded


class LoopSleeps(types.ModuleType):
    """`asyncio` for the pool module, with each sleep noted as (loop time at the call, delay)."""

    def __init__(self) -> None:
        super().__init__("asyncio")
        self.sleeps: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append((asyncio.get_running_loop().time(), delay))
        await asyncio.sleep(delay)
