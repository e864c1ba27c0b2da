"""The DATA payload: every line that starts with "." doubled, whatever pieces the body comes in.

The reference here reads the message line by line, as RFC 5321 4.5.2 words it; the transport's
payload must equal it, and a real server (aiosmtpd, both session kinds) must hand back the exact
bytes of an issue's copies whose text has lines like ".NET" and a lone ".".
"""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.compose import ComposedMessage, MessageTemplate
from newsletter.config import Settings
from newsletter.mail.pieces import SHORTEST
from newsletter.mail.smtp import SmtpTransport
from newsletter.mail.wire import Stuffer, wire_data
from newsletter.models import EMAIL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, Digest
from newsletter.pool import DeliveryPolicy, deliver
from tests.support.clock import FakeClock
from tests.support.pool_harness import SENDER, smtp_config
from tests.support.smtp_server import SmtpServer
from tests.test_compose import NOW, recipient
from tests.test_compose import settings as settings  # the module's fixture, for this module


def reference(message: bytes) -> bytes:
    """Line by line: a line starting with "." gets another; then the end-of-data line."""
    lines = message.split(b"\r\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." if line.startswith(b".") else b"") + line + b"\r\n" for line in lines) + (
        b".\r\n"
    )


line = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
) | st.sampled_from([b".", b"..", b".NET", b"", b"x.", b". ."])


@st.composite
def message_in_pieces(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Header lines, a blank line, and body lines cut into pieces at line boundaries."""
    head = draw(st.lists(line, max_size=4))
    body = draw(st.lists(line, min_size=1, max_size=30))
    cuts = sorted(draw(st.sets(st.integers(1, len(body)), max_size=8)) | {len(body)})
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(b"".join(x + b"\r\n" for x in body[start:cut]))
        start = cut
    header = b"".join(x + b"\r\n" for x in head) + b"\r\n"
    return header + b"".join(pieces), pieces


@given(message_in_pieces())
def test_the_payload_from_pieces_is_the_line_by_line_one(case: tuple[bytes, list[bytes]]) -> None:
    message, pieces = case
    stuffer = Stuffer()
    assert wire_data(message) == reference(message)
    parts = stuffer(message, pieces)
    assert len(parts) == len(pieces) + 2  # the header block, each piece, the end: trusted
    assert b"".join(parts) == reference(message)
    assert b"".join(stuffer(message, pieces)) == reference(message)  # the kept pieces again
    assert b"".join(stuffer(message, pieces)) == reference(message)


@given(message_in_pieces(), st.integers(0, 3))
def test_pieces_that_are_not_the_body_in_whole_lines_are_not_trusted(
    case: tuple[bytes, list[bytes]], how: int
) -> None:
    message, pieces = case
    if how == 0:  # a piece that differs from the message's bytes
        pieces = [*pieces[:-1], b"." + pieces[-1]]
    elif how == 1:  # a piece that does not end a line
        pieces = [*pieces[:-1], pieces[-1] + b"."]
    elif how == 2:  # more than the message holds
        pieces = [message, *pieces]
    else:  # the last piece less its first byte: it does not start a line
        pieces = [pieces[-1][1:]]
    assert b"".join(Stuffer()(message, pieces)) == reference(message)


@pytest.mark.parametrize(
    "pieces",
    [
        [b"a", b".b\r\n"],  # the body's bytes, but cut inside a line
        [b".ab\r\n"],  # as long as the last line, other bytes
        [b"S: x\r\n\r\na.b\r\n", b"a.b\r\n"],  # more than the message
    ],
)
def test_pieces_must_be_the_bodys_own_bytes_in_whole_lines(pieces: list[bytes]) -> None:
    message = b"S: x\r\n\r\na.b\r\n"
    assert b"".join(Stuffer()(message, pieces)) == b"S: x\r\n\r\na.b\r\n.\r\n"


def test_a_message_without_a_final_line_break_gets_one_before_the_end() -> None:
    assert wire_data(b"Subject: x\r\n\r\n.last") == b"Subject: x\r\n\r\n..last\r\n.\r\n"


def digest_with_dots() -> Digest:
    html = (
        "<html><body>\n<p>Rare earths</p>\n.NET developers read this too\n.\n..\n"
        + "<p>"
        + "Neodymium oxide prices. " * 40
        + "</p>\n"
        + f'<a href="{UNSUBSCRIBE_URL_PLACEHOLDER}">Unsubscribe</a> {EMAIL_PLACEHOLDER}\n'
        + "</body></html>"
    )
    text = (
        "REE Daily\n.\n.a line that starts with a dot\n"
        f"Unsubscribe: {UNSUBSCRIBE_URL_PLACEHOLDER}\n.{EMAIL_PLACEHOLDER}\n"
    )
    return Digest("Dots", "p", html, text, ("a",))


@pytest.mark.parametrize("pipelining", [True, False])
def test_an_issues_copies_arrive_byte_exact_through_a_real_server(
    settings: Settings, pipelining: bool
) -> None:
    template = MessageTemplate.build(digest_with_dots(), settings, date(2026, 11, 28), NOW)
    items: list[ComposedMessage] = [
        template.render(recipient(n, f"r{n}@example.org")) for n in range(6)
    ]
    assert all(len(item.body) > 1 for item in items)
    with SmtpServer() as server:
        server.handler.pipelining = pipelining
        transport = SmtpTransport(smtp_config(server.port))

        async def record(item: ComposedMessage, outcome: object) -> None:
            return None

        counts = asyncio.run(
            deliver(
                items,
                transport,
                lambda _: SENDER,
                DeliveryPolicy(connections=2),
                record,
                FakeClock(),
            )
        )
        received = {m.rcpt_tos[0]: m.data for m in server.messages}
    assert counts == {"sent": 6}
    assert received == {item.recipient.email: item.data for item in items}
    # the issue's shared pieces were handed over, and kept stuffed for the next copies
    shared = [p for p in items[0].body if all(any(q is p for q in i.body) for i in items)]
    kept = {id(piece) for piece, _ in transport.stuffer._piece.known.values()}
    assert kept and kept == {id(p) for p in shared if len(p) >= SHORTEST}
