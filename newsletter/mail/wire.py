"""The DATA payload (RFC 5321 4.5.2): every line that starts with "." gets a second one, and
the end-of-data line follows.

Finding those lines means searching the whole message for CRLF ".", and Python's search for a
short pattern whose first byte is frequent runs at about a byte a cycle: 23 us of a ~33 KB
digest, some 7% of what a send spends on one message. Stuffing is line-local, though, and an
issue's copies share all but a few lines: given the body as whole lines in pieces
(`compose.ComposedMessage.body`, the template's pieces the same objects in every copy), a
shared piece is not searched again (`pieces.SharedPieces`). The header block and the reader's
own lines, a few hundred bytes, are. Pieces that are not exactly the message's body in whole
lines are not trusted, and the message is stuffed as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.mail.pieces import SharedPieces

END = b".\r\n"


def stuff(lines: bytes) -> bytes:
    """Whole lines (or a message) with every line that starts with "." given a second one."""
    stuffed = lines.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def wire_data(message: bytes) -> bytes:
    """The payload for a message in CRLF lines (compose and DKIM both write them)."""
    stuffed = stuff(message)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + END


class Stuffer:
    """Payloads for one transport's messages, the shared body pieces stuffed once."""

    def __init__(self) -> None:
        self._piece = SharedPieces(stuff)

    def __call__(self, message: bytes, body: Sequence[bytes] = ()) -> list[bytes]:
        """The payload in parts, to be written in order."""
        head = len(message) - sum(map(len, body))
        if not body or not _whole_lines(message, head, body):
            return [wire_data(message)]
        return [stuff(message[:head]), *map(self._piece, body), END]


def _whole_lines(message: bytes, head: int, body: Sequence[bytes]) -> bool:
    """Whether `body` is `message` from `head` on, each piece starting a line and ending one."""
    if head < 2 or message[head - 2 : head] != b"\r\n":
        return False
    offset = head
    for piece in body:
        if not (piece.endswith(b"\r\n") and message.startswith(piece, offset)):
            return False
        offset += len(piece)
    return True
