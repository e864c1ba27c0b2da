"""What comes back by mail: RFC 3464 delivery-status notifications (and their RFC 6533 form for
readers with a non-ASCII address), and the requests readers send to the List-Unsubscribe mailto
address, read from an mbox file or a Maildir folder.
"""

from __future__ import annotations

import base64
import mailbox
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient block of a delivery-status notification."""

    final_recipient: str
    action: str
    status: str
    verp_to: str  # the address the DSN was sent to: our VERP sender, if VERP was on

    @property
    def hard(self) -> bool:
        return self.action == "failed" and self.status.startswith("5.1.")


_EMBEDDED = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")  # RFC 6533's \x{E9} for a non-ASCII character


def _address(field: str | None) -> str:
    """'rfc822; Bob@Example.org' -> 'Bob@Example.org'; 'utf-8; jos\\x{E9}@x' -> 'josé@x'."""
    value = (field or "").partition(";")[2] or (field or "")
    return _EMBEDDED.sub(_unescape, value.strip().strip("<>"))


def _unescape(match: re.Match[str]) -> str:
    point = int(match.group(1), 16)
    return chr(point) if 0x80 <= point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF else "\ufffd"


_REPORT_TYPES = ("delivery-status", "global-delivery-status")


def parse_dsn(message: Message) -> list[DsnRecipient]:
    """The per-recipient blocks of a multipart/report DSN; [] for any other message.

    A report about mail sent with SMTPUTF8 carries its fields in message/global-delivery-status
    (RFC 6533): UTF-8, in any transfer encoding, which the email package parses as one message
    rather than as blocks, so its blocks are read here.
    """
    if message.get_content_type() != "multipart/report":
        return []
    if str(message.get_param("report-type", "")).lower() not in _REPORT_TYPES:
        return []
    verp_to = str(message.get("To", ""))
    found = []
    for part in message.walk():
        for block in _recipient_blocks(part):
            found.append(
                DsnRecipient(
                    final_recipient=_address(block.get("Final-Recipient")),
                    action=str(block.get("Action", "")).strip().lower(),
                    status=str(block.get("Status", "")).strip(),
                    verp_to=verp_to,
                )
            )
    return found


def _recipient_blocks(part: Message) -> list[Message]:
    """The per-recipient field blocks of a (global) delivery-status part; [] for other parts."""
    kind = part.get_content_type()
    if kind == "message/delivery-status":
        blocks = part.get_payload()
        return [b for b in blocks[1:] if isinstance(b, Message)] if isinstance(blocks, list) else []
    if kind != "message/global-delivery-status":
        return []
    inner = part.get_payload()
    if isinstance(inner, list):  # parsed as a message: its bytes are the part's body
        raw = b"".join(m.as_bytes() for m in inner if isinstance(m, Message))
    elif isinstance(inner, str):
        raw = inner.encode("ascii", "surrogateescape")
    else:
        return []
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        raw = base64.b64decode(b"".join(raw.split()), validate=False)
    elif encoding == "quoted-printable":
        raw = quopri.decodestring(raw)
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    texts = [t for t in re.split(r"\n[ \t]*\n", text.strip()) if t.strip()]
    return [HeaderParser().parsestr(fields + "\n") for fields in texts[1:]]


_UNSUBSCRIBE = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+)", re.I)


def unsubscribe_token(message: Message) -> str | None:
    """The token of a `mailto:...?subject=unsubscribe%20<token>` request, from its Subject."""
    match = _UNSUBSCRIBE.search(str(message.get("Subject", "")))
    return match.group(1) if match else None


def read_mailbox(path: Path) -> Iterator[Message]:
    """Messages of an mbox file or a Maildir folder."""
    box: mailbox.Mailbox[mailbox.Message]
    box = mailbox.Maildir(path, create=False) if path.is_dir() else mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            yield message_from_bytes(raw, policy=policy.compat32)
    finally:
        box.close()


# Bounces in other formats (old Exim, qmail, Postfix without DSN, Yahoo, Microsoft, ...):
# flufl.bounce, Mailman 3's detectors, read them where `parse_dsn` finds no RFC 3464 report.
# It names failed addresses only; the reader is found as for any report, by our Message-ID in
# the returned original or by the VERP address the bounce was sent to, never by the address.

_QUOTED_MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^<>\s]+@[^<>\s]+>)", re.I | re.M)
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To")


@dataclass(frozen=True)
class OtherBounce:
    permanent: tuple[str, ...]  # addresses flufl.bounce found failing for good
    temporary: tuple[str, ...]
    verp_to: tuple[str, ...]  # where the bounce was delivered: our VERP sender, if VERP is on
    message_ids: tuple[str, ...]  # Message-IDs of the returned original, attached or quoted


def scan_other_bounce(message: Message) -> OtherBounce | None:
    """A non-RFC 3464 bounce as flufl.bounce reads it; None if it finds no failure."""
    from flufl.bounce import all_failures  # imported by the one command that reads bounces

    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on odd mail must not stop the mailbox
        return None
    if not permanent and not temporary:
        return None
    return OtherBounce(
        permanent=tuple(sorted(_decoded(permanent))),
        temporary=tuple(sorted(_decoded(temporary))),
        verp_to=tuple(str(v) for name in _VERP_HEADERS for v in message.get_all(name, [])),
        message_ids=tuple(dict.fromkeys(_returned_message_ids(message))),
    )


def _decoded(addresses: frozenset[bytes]) -> list[str]:
    return [a.decode("utf-8", "replace").strip().lower() for a in addresses]


def _returned_message_ids(message: Message) -> list[str]:
    found: list[str] = []
    for part in message.walk():
        if part is not message:  # the bounce's own Message-ID is not the original's
            found += [str(v).strip() for v in part.get_all("Message-ID", [])]
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            found += _QUOTED_MESSAGE_ID.findall(text)
    return found
