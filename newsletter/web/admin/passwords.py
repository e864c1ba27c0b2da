"""The admin password hash: scrypt (RFC 7914) from the standard library, in a PHC-style string.

Format: `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt, base64>$<32-byte key, base64>` (standard
base64 without line breaks). `newsletter admin hash-password` writes it with N=2^17, r=8, p=1,
OWASP's recommended minimum for scrypt (about 0.65 s and 128 MiB on the project's machine;
the login lets two checks run at once, so a flood of logins cannot exhaust memory). The
parameters travel with the hash, so raising them later only needs a new hash; verification
accepts up to N=2^20 and compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

LOG2_N, R, P = 17, 8, 1
KEY_BYTES = 32
_FORMAT = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)"
)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, size: int) -> bytes:
    memory = 128 * r * (2**log2_n) * 2 + 1024 * 1024  # what OpenSSL needs, with headroom
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=2**log2_n, r=r, p=p, maxmem=memory, dklen=size
    )


def hash_password(password: str, *, log2_n: int = LOG2_N, r: int = R, p: int = P) -> str:
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, log2_n, r, p, KEY_BYTES)
    encode = base64.b64encode
    return f"$scrypt$ln={log2_n},r={r},p={p}${encode(salt).decode()}${encode(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    found = _FORMAT.fullmatch(stored)
    if found is None:
        return False
    log2_n, r, p = (int(found.group(i)) for i in (1, 2, 3))
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    salt, expected = base64.b64decode(found.group(4)), base64.b64decode(found.group(5))
    given = _scrypt(password, salt, log2_n, r, p, len(expected))
    return hmac.compare_digest(given, expected)
