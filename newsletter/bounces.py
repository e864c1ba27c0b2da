"""What comes back: VERP envelope senders, hard-bounce classification, RFC 3464 DSNs, and the
mails readers send to the List-Unsubscribe mailto address.

VERP puts the subscriber into the envelope sender (`bounce+<id>-<mac>@<verp_domain>`), so a
bounce identifies its recipient even when the remote server rewrites Final-Recipient. The MAC
(HMAC-SHA256 under the signing keys, 10 hex digits) stops a forged bounce from suppressing
someone else; `[\\w-]` only, so no relay has to quote or re-encode it.
"""

from __future__ import annotations

import hashlib
import hmac
import mailbox
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

_MAC_LEN = 10
_VERP = re.compile(r"bounce\+(\d+)-([0-9a-f]{10})@", re.I)
# 5.1.x: bad destination mailbox (no such user, bad syntax, moved). 5.7.x (policy) and other
# permanent replies usually mean reputation or content trouble, not a dead address.
_HARD_STATUS = re.compile(r"\b5\.1\.\d{1,3}\b")
_HARD_CODES = (550, 551, 553)


class Verp:
    """Encode and check per-recipient envelope senders under the run's signing keys."""

    def __init__(self, secret_keys: Sequence[str], domain: str) -> None:
        self.keys = [key.encode() for key in secret_keys]
        self.domain = domain

    def _mac(self, key: bytes, subscriber_id: int) -> str:
        digest = hmac.new(key, f"verp:{subscriber_id}".encode(), hashlib.sha256).hexdigest()
        return digest[:_MAC_LEN]

    def address(self, subscriber_id: int) -> str:
        return f"bounce+{subscriber_id}-{self._mac(self.keys[-1], subscriber_id)}@{self.domain}"

    def read(self, address: str) -> int | None:
        """The subscriber id of a genuine VERP address, else None."""
        match = _VERP.search(address)
        if not match:
            return None
        subscriber_id, mac = int(match.group(1)), match.group(2).lower()
        genuine = any(hmac.compare_digest(mac, self._mac(k, subscriber_id)) for k in self.keys)
        return subscriber_id if genuine else None


def is_hard_bounce(code: int, text: str) -> bool:
    """A permanent "this mailbox does not exist" answer (RFC 3463 class 5, subject 1)."""
    if _HARD_STATUS.search(text):
        return True
    return code in _HARD_CODES and not re.search(r"\b5\.\d\.\d", text)


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
