"""DKIM signatures (dkimpy) on the exact bytes we send, and the keys behind them.

Why this shape (RFC 6376; Gmail and Yahoo require DKIM from bulk senders):
- Signing comes last, on the finished per-recipient bytes, and never re-serializes them: the
  signature headers are prepended and the message bytes are returned untouched (any later
  re-folding would break bh= and b=).
- `c=relaxed/relaxed`, no `l=` (RFC 6376 3.4, 5.4.1: `l=` lets text be appended). The field
  list is ours, not dkimpy's default, because that default leaves out List-Unsubscribe-Post
  (RFC 8058 4) and Feedback-ID (Google's feedback loop wants it signed). Each listed field is
  signed as often as it occurs; From, Subject and the two List-Unsubscribe fields once more
  (over-signing, RFC 6376 5.4.2), so a copy of any of them added on the way breaks the
  signature instead of offering the reader someone else's sender, subject or one-click URL.
- RSA-SHA256 with a key of at least 2048 bits always (RFC 8301); Ed25519 only in addition, under
  its own selector (RFC 8463), because not every receiver verifies it.
- Keys are read and checked once per run (`DkimSigner.from_config`); each message is signed by
  `dkim_fast`, which writes dkimpy's bytes without re-parsing the key and the message per call
  and with RSA in OpenSSL (bench/dkim_cost.py measures both).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.clock import Clock
from newsletter.config import DkimConfig
from newsletter.errors import NewsletterError
from newsletter.mail import dkim_fast

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
MIN_RSA_BITS = 2048
SIGNED_FIELDS = (
    "from", "reply-to", "to", "cc", "subject", "date", "message-id", "mime-version",
    "content-type", "content-transfer-encoding", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "list-archive", "feedback-id", "precedence", "auto-submitted",
)  # fmt: skip
OVERSIGNED = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")
# DER prefix of an Ed25519 PKCS#8 private key (RFC 8410); the 32-byte seed follows it.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_RSA_ALGORITHM_ID = bytes.fromhex("300d06092a864886f70d0101010500")  # rsaEncryption, NULL


class DkimError(NewsletterError):
    """A DKIM key is missing, unreadable, too weak, or a message could not be signed."""


@dataclass(frozen=True)
class DkimKey:
    """One signing key as dkimpy takes it, plus its public half for the DNS record."""

    selector: str
    algorithm: str  # RSA or ED25519
    private: bytes  # PEM for RSA, the base64 seed for Ed25519 (dkimpy's formats)
    public: bytes  # DER SubjectPublicKeyInfo for RSA, the raw 32-byte key for Ed25519
    bits: int

    @property
    def key_type(self) -> str:
        return "rsa" if self.algorithm == RSA else "ed25519"

    def txt_record(self) -> str:
        """The value to publish at <selector>._domainkey.<domain>."""
        encoded = base64.b64encode(self.public).decode("ascii")
        return f"v=DKIM1; k={self.key_type}; p={encoded}"

    def matches(self, record: bytes) -> bool:
        """True if a published TXT value carries this key's public half (read as dkimpy, the
        reference verifier, reads it; loaded here, not for a send: with dnspython, ~60-140 ms)."""
        import dkim.crypto
        import dkim.util

        try:
            tags = dkim.util.parse_tag_value(record.replace(b"\r", b"").replace(b"\n", b""))
            published = base64.b64decode(tags.get(b"p", b""), validate=False)
        except (dkim.util.InvalidTagValueList, binascii.Error):
            return False
        if tags.get(b"k", b"rsa").decode("ascii", "replace") != self.key_type or not published:
            return False
        if self.algorithm == ED25519:
            return published == self.public
        try:
            theirs = dkim.crypto.parse_public_key(published)
            ours = dkim.crypto.parse_public_key(self.public)
        except dkim.crypto.UnparsableKeyError:
            return False
        return bool(theirs == ours)


def load_key(selector: str, algorithm: str, path: Path) -> DkimKey:
    """Read and check one private key file; DkimError names the file and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimError(f"cannot read the DKIM key {path}: {exc.strerror or exc}") from None
    if algorithm == RSA:
        return _rsa_key(selector, data, path)
    return _ed25519_key(selector, data, path)


def _rsa_key(selector: str, data: bytes, path: Path) -> DkimKey:
    """Read with cryptography (what signs), not dkimpy's parser: loading dkimpy and the DNS
    library it pulls in was 60-140 ms of every signed send's start. OpenSSL's slow key check
    is left to `dkim_fast.load_key`'s sign-and-verify."""
    pem = data.replace(b"\r\n", b"\n")  # dkimpy's PEM reader (tests' reference) wants LF
    try:
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DkimError(f"{path} is not an RSA private key in PEM: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimError(f"{path} is not an RSA private key in PEM: it holds another kind")
    numbers = key.public_key().public_numbers()
    if numbers.n.bit_length() < MIN_RSA_BITS:
        raise DkimError(
            f"{path} is a {numbers.n.bit_length()}-bit RSA key; DKIM needs at least "
            f"{MIN_RSA_BITS} bits (RFC 8301). Make one with `newsletter dkim keygen`."
        )
    public = rsa_public_der(numbers.n, numbers.e)
    return DkimKey(selector, RSA, pem, public, numbers.n.bit_length())


def _ed25519_key(selector: str, data: bytes, path: Path) -> DkimKey:
    """Accept dkimpy's format (base64 seed) and OpenSSL's PKCS#8 PEM."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN PRIVATE KEY-----"):
            der = base64.b64decode(b"".join(text.splitlines()[1:-1]))
            if not der.startswith(_ED25519_PKCS8_PREFIX):
                raise ValueError("not an Ed25519 key")
            seed = der[len(_ED25519_PKCS8_PREFIX) :]
        else:
            seed = base64.b64decode(text, validate=True)
        signing = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise DkimError(f"{path} is not an Ed25519 private key: {exc}") from None
    raw = serialization.Encoding.Raw
    public = signing.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return DkimKey(selector, ED25519, base64.b64encode(seed), public, 256)


def rsa_public_der(modulus: int, exponent: int) -> bytes:
    """SubjectPublicKeyInfo DER (what `openssl rsa -pubout` writes), the DNS record's p=."""
    rsa_key = _der(0x30, _der_int(modulus) + _der_int(exponent))
    return _der(0x30, _RSA_ALGORITHM_ID + _der(0x03, b"\x00" + rsa_key))


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def signed_fields(present: Iterable[str]) -> list[str]:
    """The h= list for a message with these header fields (see the module docstring)."""
    names = [name.lower() for name in present]
    fields = [name for name in SIGNED_FIELDS for _ in range(names.count(name))]
    return fields + [name for name in OVERSIGNED if name in names]


def _signing_key(key: DkimKey) -> dkim_fast.PrivateKey:
    try:
        return dkim_fast.load_key(key.private)
    except ValueError as exc:
        raise DkimError(f"the DKIM key of selector {key.selector!r} cannot sign: {exc}") from None


class DkimSigner:
    """Signs finished messages; build it once per run with `from_config`."""

    def __init__(self, domain: str, keys: Sequence[DkimKey], clock: Clock) -> None:
        if not keys:
            raise DkimError("a DKIM signer needs at least one key")
        self.domain = domain
        self.keys = tuple(keys)
        self.clock = clock
        loaded = [(key.selector, _signing_key(key)) for key in self.keys]
        self.fast = dkim_fast.FastSigner(domain, loaded, fields=signed_field_names)

    @classmethod
    def from_config(cls, config: DkimConfig, clock: Clock) -> DkimSigner | None:
        """The run's signer, or None when `[dkim]` has no selector (unsigned mail)."""
        if not config.enabled:
            if config.ed25519_selector:
                raise DkimError(
                    "dkim.ed25519_selector is set but dkim.selector is not: Ed25519 signs "
                    "only in addition to RSA (RFC 8463)"
                )
            return None
        keys = [load_key(config.selector, RSA, config.private_key)]
        if config.ed25519_selector and config.ed25519_private_key is not None:
            keys.append(load_key(config.ed25519_selector, ED25519, config.ed25519_private_key))
        return cls(config.domain, keys, clock)

    def sign(self, message: bytes, body_pieces: Sequence[bytes] = ()) -> bytes:
        """The complete message: one DKIM-Signature per key (RSA on top), then the input bytes.

        The same bytes dkimpy's `dkim.sign` writes for each key, made in a fraction of its time
        (`dkim_fast`; `body_pieces` lets it canonicalize an issue's shared lines once); t= is
        the run's clock.
        """
        try:
            now = int(self.clock().timestamp())
            return self.fast.sign(message, timestamp=now, body_pieces=body_pieces)
        except ValueError as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from exc


def signed_field_names(present: list[bytes]) -> list[bytes]:
    """`signed_fields` for the names as dkim_fast reads them (lowercase bytes)."""
    names = signed_fields(name.decode("ascii", "replace") for name in present)
    return [name.encode("ascii") for name in names]


def write_private_file(path: Path, data: bytes) -> None:
    """Create a key file readable by its owner only; never overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise DkimError(f"{path} exists; move it away or choose another selector") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def generate_key(selector: str, algorithm: str, path: Path) -> DkimKey:
    """Write a new private key to `path` and return it loaded, as a run would load it."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", selector):
        raise DkimError(f"selector {selector!r}: use letters, digits and inner hyphens only")
    if algorithm == RSA:
        write_private_file(path, _new_rsa_pem())
    else:
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        write_private_file(path, base64.b64encode(seed) + b"\n")
    return load_key(selector, algorithm, path)


def _new_rsa_pem() -> bytes:
    """A 2048-bit RSA key in PKCS#1 PEM; key generation is OpenSSL's job, not ours."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def zone_line(name: str, value: str) -> str:
    """A zone-file TXT line; DNS strings hold at most 255 bytes, so long values are split."""
    chunks = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return f"{name}. IN TXT ( {chunks} )"
