"""Bounce policy: VERP envelope senders and which refusals mean "this mailbox does not exist".

VERP puts the subscriber into the envelope sender (`bounce+<32 hex digits>@<verp_domain>`), so
a bounce identifies its recipient even when the remote server rewrites Final-Recipient. The
digits are one AES block (a key derived from the signing keys) holding the subscriber id and a
fixed 8-byte tag: sealed, the id tells nobody the size of the list (every reader sees the
address in Return-Path), and a forged or altered address fails the tag (2^-64 odds of passing).
Hex only, so no relay has to quote or re-encode it, and case-blind.

Mail sent before sealing carries `bounce+<id>-<mac>@` (the id in clear and 10 hex digits of
HMAC-SHA256 under the signing keys); bounces of it are still read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

_MAC_LEN = 10
_VERP = re.compile(r"bounce\+(\d+)-([0-9a-f]{10})@", re.I)
_SEALED = re.compile(r"bounce\+([0-9a-f]{32})@", re.I)
_TAG = b"ree-verp"  # the block's second half: what only our key turns a genuine address into
# 5.1.x: bad destination mailbox (no such user, bad syntax, moved). 5.7.x (policy) and other
# permanent replies usually mean reputation or content trouble, not a dead address.
_HARD_STATUS = re.compile(r"\b5\.1\.\d{1,3}\b")
_HARD_CODES = (550, 551, 553)


class Verp:
    """Encode and check per-recipient envelope senders under the run's signing keys."""

    def __init__(self, secret_keys: Sequence[str], domain: str) -> None:
        self.keys = [key.encode() for key in secret_keys]
        self.domain = domain
        self._seals = [hashlib.sha256(b"verp-seal:" + key).digest()[:16] for key in self.keys]

    def _mac(self, key: bytes, subscriber_id: int) -> str:
        digest = hmac.new(key, f"verp:{subscriber_id}".encode(), hashlib.sha256).hexdigest()
        return digest[:_MAC_LEN]

    def address(self, subscriber_id: int) -> str:
        """The envelope sender of this reader's copy, sealed under the newest key."""
        block = subscriber_id.to_bytes(8, "big") + _TAG
        sealed = _block_cipher(self._seals[-1]).encryptor().update(block)
        return f"bounce+{sealed.hex()}@{self.domain}"

    def read(self, address: str) -> int | None:
        """The subscriber id of a genuine VERP address (sealed, or of the older form), else None."""
        sealed = _SEALED.search(address)
        if sealed:
            raw = bytes.fromhex(sealed.group(1))
            for seal in self._seals:
                block = _block_cipher(seal).decryptor().update(raw)
                if hmac.compare_digest(block[8:], _TAG):
                    return int.from_bytes(block[:8], "big")
            return None
        match = _VERP.search(address)
        if not match:
            return None
        subscriber_id, mac = int(match.group(1)), match.group(2).lower()
        genuine = any(hmac.compare_digest(mac, self._mac(k, subscriber_id)) for k in self.keys)
        return subscriber_id if genuine else None


def _block_cipher(key: bytes) -> Cipher[modes.ECB]:
    """AES on one block: ECB's weakness (equal blocks look equal) is no weakness for a single
    block that is the same for a reader anyway, as the address was before.

    cryptography's ciphers are loaded here, with the first sealed address: importing them
    costs every command ~40 ms at start, and most sends seal nothing (`verp_domain` unset).
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB())


def is_hard_bounce(code: int, text: str) -> bool:
    """A permanent "this mailbox does not exist" answer (RFC 3463 class 5, subject 1)."""
    if _HARD_STATUS.search(text):
        return True
    return code in _HARD_CODES and not re.search(r"\b5\.\d\.\d", text)
