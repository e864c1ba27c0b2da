"""What comes back by mail: RFC 3464 delivery-status notifications, and the requests readers send
to the List-Unsubscribe mailto address, read from an mbox file or a Maildir folder.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
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


def _address(field: str | None) -> str:
    """'rfc822; Bob@Example.org' -> 'Bob@Example.org'."""
    value = (field or "").partition(";")[2] or (field or "")
    return value.strip().strip("<>")


def parse_dsn(message: Message) -> list[DsnRecipient]:
    """The per-recipient blocks of a multipart/report DSN; [] for any other message."""
    if message.get_content_type() != "multipart/report":
        return []
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return []
    verp_to = str(message.get("To", ""))
    found = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        blocks = blocks if isinstance(blocks, list) else []
        for block in blocks[1:]:
            if not isinstance(block, Message):
                continue
            found.append(
                DsnRecipient(
                    final_recipient=_address(block.get("Final-Recipient")),
                    action=str(block.get("Action", "")).strip().lower(),
                    status=str(block.get("Status", "")).strip(),
                    verp_to=verp_to,
                )
            )
    return found


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
