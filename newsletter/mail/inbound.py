"""What comes back by mail: RFC 3464 delivery-status notifications (and their RFC 6533 form for
readers with a non-ASCII address), and the requests readers send to the List-Unsubscribe mailto
address, read from an mbox file or a Maildir folder.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from pathlib import Path


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient block of a delivery-status notification, with what finds its reader.

    `final_recipient` is for the operator to read only: anyone can mail the bounce mailbox a
    report quoting any address. The reader is found by `message_ids` (the returned original's
    Message-ID, ours only if the ledger holds it) or `verp` (where the report was delivered:
    our VERP sender, whose HMAC is checked), the same as for every other report.
    """

    final_recipient: str
    action: str
    status: str
    verp: tuple[str, ...] = ()  # To, Delivered-To, X-Original-To, Envelope-To of the report
    message_ids: tuple[str, ...] = ()  # of the returned original (headers or whole message)
    diagnostic: str = ""  # the remote server's Diagnostic-Code, for the operator

    @property
    def hard(self) -> bool:
        """The mailbox does not exist: RFC 3463 class 5, subject 1 (5.1.x)."""
        return self.action == "failed" and self.status.startswith("5.1.")

    @property
    def soft(self) -> bool:
        """Given up for another reason (policy, reputation, a full mailbox, expired retries):
        recorded, like the providers' transient and policy bounces, and suppressing nobody."""
        return self.action == "failed" and not self.hard


_EMBEDDED = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")  # RFC 6533's \x{E9} for a non-ASCII character


def _address(field: str | None) -> str:
    """'rfc822; Bob@Example.org' -> 'Bob@Example.org'; 'utf-8; jos\\x{E9}@x' -> 'josé@x'."""
    value = (field or "").partition(";")[2] or (field or "")
    return _EMBEDDED.sub(_unescape, value.strip().strip("<>"))


def _unescape(match: re.Match[str]) -> str:
    point = int(match.group(1), 16)
    return chr(point) if 0x80 <= point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF else "\ufffd"


_REPORT_TYPES = ("delivery-status", "global-delivery-status")
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
# Where RFC 3464 (and RFC 6533 for SMTPUTF8 mail) puts the returned original, or its headers.
_RETURNED_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
)
# Where the report was delivered: our VERP sender, if VERP is on (MTAs name it differently).
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To")


def parse_dsn(message: Message) -> list[DsnRecipient]:
    """The per-recipient blocks of a multipart/report DSN; [] for any other message.

    A report about mail sent with SMTPUTF8 carries its fields in message/global-delivery-status
    (RFC 6533): UTF-8, in any transfer encoding, which the email package parses as one message
    rather than as blocks, so its blocks are read here. Only the report's own parts are read: a
    delivery-status part inside the returned original describes some other mail.
    """
    if message.get_content_type() != "multipart/report":
        return []
    if str(message.get_param("report-type", "")).lower() not in _REPORT_TYPES:
        return []
    payload = message.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    verp = tuple(str(v) for name in _VERP_HEADERS for v in message.get_all(name, []))
    message_ids = tuple(dict.fromkeys(_original_message_ids(parts)))
    found = []
    for part in parts:
        for block in _recipient_blocks(part):
            found.append(
                DsnRecipient(
                    final_recipient=_address(block.get("Final-Recipient")),
                    action=str(block.get("Action", "")).strip().lower(),
                    status=str(block.get("Status", "")).strip(),
                    verp=verp,
                    message_ids=message_ids,
                    diagnostic=" ".join(str(block.get("Diagnostic-Code", "")).split()),
                )
            )
    return found


def _original_message_ids(parts: list[Message]) -> list[str]:
    """The Message-ID of the returned original (RFC 3464's third part), in whichever form the
    MTA returned it: the whole message, or only its headers, as US-ASCII or as UTF-8."""
    found: list[str] = []
    for part in parts:
        if part.get_content_type() not in _RETURNED_TYPES:
            continue
        headers = BytesHeaderParser(policy=compat32).parsebytes(_body_bytes(part))
        found += [" ".join(str(v).split()) for v in headers.get_all("Message-ID", [])]
    return [value for value in found if value]


def _body_bytes(part: Message) -> bytes:
    """A part's body with its transfer encoding undone; for a message/* part, the bytes of the
    message the email package parsed out of it (RFC 6533 allows base64 and quoted-printable
    there, which the package leaves encoded inside the parsed message)."""
    inner = part.get_payload()
    if not isinstance(inner, list):
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    raw = b"".join(m.as_bytes() for m in inner if isinstance(m, Message))
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        try:
            return base64.b64decode(b"".join(raw.split()), validate=False)
        except binascii.Error:  # bad padding: a broken report names nothing, it stops nothing
            return b""
    if encoding == "quoted-printable":
        return quopri.decodestring(raw)
    return raw


def _recipient_blocks(part: Message) -> list[Message]:
    """The per-recipient field blocks of a (global) delivery-status part; [] for other parts."""
    if part.get_content_type() not in _STATUS_TYPES:
        return []
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        return [b for b in blocks[1:] if isinstance(b, Message)] if isinstance(blocks, list) else []
    text = _body_bytes(part).decode("utf-8", "replace").replace("\r\n", "\n")
    texts = [t for t in re.split(r"\n[ \t]*\n", text.strip()) if t.strip()]
    return [HeaderParser().parsestr(fields + "\n") for fields in texts[1:]]


_UNSUBSCRIBE = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+)", re.I)


def unsubscribe_token(message: Message) -> str | None:
    """The token of a `mailto:...?subject=unsubscribe%20<token>` request, from its Subject."""
    match = _UNSUBSCRIBE.search(str(message.get("Subject", "")))
    return match.group(1) if match else None


def read_mailbox(path: Path) -> Iterator[Message]:
    """Messages of an mbox file or a Maildir folder."""
    import mailbox  # ~20 ms, and only the commands that read mail need it: not status or send

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
