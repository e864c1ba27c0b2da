"""Bounce policy: VERP envelope senders and which refusals mean "this mailbox does not exist".

VERP puts the subscriber into the envelope sender (`bounce+<id>-<mac>@<verp_domain>`), so a
bounce identifies its recipient even when the remote server rewrites Final-Recipient. The MAC
(HMAC-SHA256 under the signing keys, 10 hex digits) stops a forged bounce from suppressing
someone else; `[\\w-]` only, so no relay has to quote or re-encode it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

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
