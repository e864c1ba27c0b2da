"""A small SMTP server that notes the order of what crosses the wire, for pipelining tests.

aiosmtpd reads one command at a time and only after its handler returns, so it cannot show
what a client wrote before the server answered. This one answers like a relay that offers
PIPELINING, holds each reply to the data for `hold` seconds (replies stay in command order,
as RFC 2920 requires), and notes every step in `events`: "connect", "mail <from>", "rcpt <to>"
(or "rcpt <to> refused"), "data-end <to>", "reply <to> <code>", "quit", and "lost-in-data
<to>" when a connection ends inside DATA (that message is discarded, as a real server discards
it). It runs on the test's own loop, on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

# (recipient, how many times its data was seen) -> the reply to its data
DataReply = Callable[[str, int], str]


def accept(recipient: str, seen: int) -> str:
    return "250 2.0.0 queued"


def any_recipient(recipient: str) -> str:
    return "250 2.1.5 ok"


@dataclass
class Wire:
    hold: float = 0.05
    data_reply: DataReply = accept
    rcpt_reply: Callable[[str], str] = any_recipient
    slow_rcpt: str = ""  # the replies from this recipient's RCPT on also wait `hold` seconds
    events: list[str] = field(default_factory=list)
    stored: list[tuple[str, bytes]] = field(default_factory=list)  # accepted: (rcpt, data)
    lost: list[tuple[str, bytes]] = field(default_factory=list)  # cut off inside DATA
    seen: dict[str, int] = field(default_factory=dict)


class _Session(asyncio.Protocol):
    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.buffer = b""
        self.recipient = ""
        self.lines: list[bytes] | None = None  # inside DATA: the message so far
        self.held: list[bytes] | None = None  # replies waiting behind a held one
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.wire.events.append("connect")
        transport.write(b"220 raw ESMTP\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lines is not None:
            self.wire.events.append(f"lost-in-data {self.recipient}")
            self.wire.lost.append((self.recipient, b"".join(line + b"\r\n" for line in self.lines)))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self.lines is not None:
            if line == b".":
                self._end_of_data(b"\r\n".join(self.lines) + b"\r\n")
            else:
                self.lines.append(line[1:] if line.startswith(b".") else line)
            return
        verb = line[:4].upper()
        if verb == b"EHLO":
            self._say(b"250-raw\r\n250 PIPELINING\r\n")
        elif verb == b"MAIL":
            self.wire.events.append(f"mail {line[10:].decode()}")
            self._say(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            recipient = line[9:].decode().strip("<>")
            reply = self.wire.rcpt_reply(recipient)
            self.recipient = recipient if reply.startswith("250") else ""
            self.wire.events.append(f"rcpt {recipient}" + ("" if self.recipient else " refused"))
            if recipient == self.wire.slow_rcpt and self.held is None:
                self.held = []
                asyncio.get_running_loop().call_later(self.wire.hold, self._release, "", "")
            self._say(reply.encode() + b"\r\n")
        elif verb == b"DATA" and not self.recipient:
            self._say(b"554 5.5.1 no valid recipients\r\n")
        elif verb == b"DATA":
            self.lines = []
            self._say(b"354 go ahead\r\n")
        elif verb == b"RSET":
            self.recipient = ""
            self._say(b"250 2.0.0 reset\r\n")
        elif verb == b"QUIT":
            self.wire.events.append("quit")
            self._say(b"221 2.0.0 bye\r\n")
            assert self.transport is not None
            self.transport.close()
        else:
            self._say(b"500 5.5.2 what\r\n")

    def _end_of_data(self, message: bytes) -> None:
        self.lines, recipient, self.recipient = None, self.recipient, ""
        wire = self.wire
        wire.events.append(f"data-end {recipient}")
        wire.seen[recipient] = seen = wire.seen.get(recipient, 0) + 1
        reply = wire.data_reply(recipient, seen)
        if reply.startswith("250"):
            wire.stored.append((recipient, message))
        self.held = []
        asyncio.get_running_loop().call_later(wire.hold, self._release, recipient, reply)

    def _release(self, recipient: str, reply: str) -> None:
        """Write the held reply to a data (none for a slow RCPT) and what waited behind it."""
        if reply:
            self.wire.events.append(f"reply {recipient} {reply[:3]}")
        held, self.held = self.held or [], None
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write((reply + "\r\n" if reply else "").encode() + b"".join(held))

    def _say(self, reply: bytes) -> None:
        if self.held is not None:
            self.held.append(reply)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


@contextlib.asynccontextmanager
async def serving(wire: Wire) -> AsyncIterator[int]:
    """The server listening on 127.0.0.1 while the block runs; its port. Stopped after."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Session(wire), "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
