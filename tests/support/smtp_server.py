"""A real aiosmtpd server on 127.0.0.1, port 0, in its own thread, recording what it receives.

Tests set `behaviour` to make it misbehave the way real relays do (4xx/5xx on RCPT, drops in
DATA, stalls), so the client code under test meets real SMTP replies, not mocks.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()  # MAIL FROM parameters, as aiosmtpd upper-cases them


# A behaviour sees (phase, address) and returns None to accept, an SMTP reply to refuse, DROP
# to close the connection without a reply, or STALL to never answer (a client timeout).
Behaviour = Callable[[str, str], str | None]
DROP = "DROP"
STALL = "STALL"


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    behaviour: Behaviour | None = None
    delay: float = 0.0  # seconds each DATA takes: a slow relay, for crash and overlap tests
    pipelining: bool = True  # advertise RFC 2920 PIPELINING, as Postfix and most relays do
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def _refusal(self, server: SMTP, phase: str, address: str) -> str | None:
        reply = self.behaviour(phase, address) if self.behaviour else None
        if reply == DROP and isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
            return "421 4.4.2 dropped"
        if reply == STALL:
            await asyncio.sleep(3600)
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd reads commands one by one, so pipelined input works; it just never says so."""
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = await self._refusal(server, "rcpt", address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        refusal = await self._refusal(server, "data", rcpt)
        if refusal:
            return refusal
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(
                    str(envelope.mail_from),
                    tuple(envelope.rcpt_tos),
                    bytes(content),
                    tuple(envelope.mail_options),
                )
            )
        return "250 2.0.0 Message accepted for delivery"


class _Busy(asyncio.Protocol):
    """A server that answers every connection with 421 and hangs up (overloaded relay)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.3.2 sink.test busy, try again later\r\n")
        transport.close()


class SmtpServer:
    """Start with `with SmtpServer() as server:`; `server.port` is the port the OS picked.

    `busy=True` answers every connection with 421; `implicit_tls` wraps every connection in TLS
    from the first byte (port 465 style); `smtp_kwargs` go to aiosmtpd's SMTP (for example an
    authenticator, or `tls_context` to offer STARTTLS).
    """

    def __init__(
        self,
        handler: RecordingHandler | None = None,
        *,
        busy: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
        **smtp_kwargs: Any,
    ) -> None:
        self.busy = busy
        self.implicit_tls = implicit_tls
        self.handler = handler or RecordingHandler()
        self.smtp_kwargs = smtp_kwargs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.sessions: list[SMTP] = []

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def __enter__(self) -> SmtpServer:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        future.result(timeout=10)
        return self

    async def _start(self) -> None:
        def factory() -> SMTP | _Busy:
            if self.busy:
                return _Busy()
            session = SMTP(
                self.handler, hostname="sink.test", decode_data=False, **self.smtp_kwargs
            )
            self.sessions.append(session)
            return session

        self.server = await self.loop.create_server(factory, "127.0.0.1", 0, ssl=self.implicit_tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for session in self.sessions:
                if session.transport is not None:
                    session.transport.close()
            await self.server.wait_closed()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
