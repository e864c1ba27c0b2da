"""Signed, purpose-bound tokens for the links in our mail (unsubscribe, confirm) and the form.

Why this shape:
- A token names the subscriber by an opaque random public id (`models.new_public_id`, stored
  with the subscriber), never by the database id: sequential ids would tell anyone holding two
  links how big the list is and how fast it grows.
- One salt per purpose, so a confirm token can never be replayed as an unsubscribe token or the
  other way round (RFC 8058 3.1: the URI identifies one recipient and one purpose).
- Exactly one spelling verifies. base64 leaves unused bits in the last character of a 20-byte
  MAC and the decoder skips characters outside its alphabet, so several spellings decode to the
  same MAC; a token is accepted only if its signature is spelled as we spell it.
- Unsubscribe tokens never expire: the law wants the link to work for at least 30 days and a
  reader may open an old issue a year later (CAN-SPAM, 15 U.S.C. 7704(a)(3)(A)). So the old
  format (the database id as the payload) still verifies (`SubscriberRef.legacy_id`); it is never
  issued again. Confirm tokens expire; the old format is read for them too until it has.
- Keys are ordered oldest to newest; we sign with the last one and verify with any, so a key
  can be rotated without breaking the links in mail already sent.
- HMAC-SHA1 (itsdangerous' default, sound as an HMAC) keeps a token near 50 URL-safe characters
  without '@' (RFC 8058 3.1: hard to forge, nothing that reads as an address).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import (
    BadData,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes

from newsletter.clock import Clock
from newsletter.errors import TokenError, TokenExpiredError

UNSUBSCRIBE_SALT = "ree-newsletter.unsubscribe"  # the legacy format (database ids)
CONFIRM_SALT = "ree-newsletter.confirm"
PUBLIC_UNSUBSCRIBE_SALT = "ree-newsletter.unsubscribe.public"
PUBLIC_CONFIRM_SALT = "ree-newsletter.confirm.public"
CONSENT_SALT = "ree-newsletter.consent-version"
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # models.new_public_id: 16 bytes, base64url
MAX_LEGACY_ID = 2**31 - 1  # the id column's range on PostgreSQL; beyond it names nobody


class _KeyedSigner(Signer):
    """itsdangerous' Signer (HMAC-SHA1, "django-concat" key), with the signing key derived once
    and the MAC made in one OpenSSL call. A send makes one unsubscribe token per reader, and
    Signer derives the key again and runs `hmac`'s pure-Python set-up each time (its digest is
    a Python function, which `hmac` cannot hand to OpenSSL): 6.4 us a token against 4.1. The
    bytes are Signer's (tests/test_tokens.py compares them); verifying is Signer's own."""

    def __init__(self, secret_keys: Sequence[str], *, salt: str) -> None:
        super().__init__(secret_keys, salt=salt)
        self._signing_key = self.derive_key()  # from the newest key, as Signer signs

    def get_signature(self, value: str | bytes) -> bytes:
        return base64_encode(hmac.digest(self._signing_key, want_bytes(value), "sha1"))


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner whose notion of "now" is injected, so expiry is testable without waiting.

    itsdangerous asks `get_timestamp` both when stamping and when computing a token's age.
    """

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


@dataclass(frozen=True)
class SubscriberRef:
    """Whom a genuine token names: a public id, or (old links only) a database id."""

    public_id: str | None = None
    legacy_id: int | None = None


@dataclass(frozen=True)
class ConfirmToken:
    """A genuine confirm token: whose, when it was signed (which request it answers), if too old."""

    subscriber: SubscriberRef
    issued_at: datetime
    expired: bool


class Tokens:
    """Makes and reads the tokens of every purpose with one ordered set of keys."""

    def __init__(
        self, secret_keys: Sequence[str], confirm_max_age: timedelta, clock: Clock
    ) -> None:
        keys = list(secret_keys)
        if not keys or not all(keys):
            raise ValueError("Tokens needs at least one non-empty secret key (oldest first)")
        if confirm_max_age <= timedelta(0):
            raise ValueError("confirm_max_age must be positive")
        self._max_age = int(confirm_max_age.total_seconds())
        self._clock = clock
        stamp = {"clock": lambda: clock().timestamp()}
        self._unsubscribe = _KeyedSigner(keys, salt=PUBLIC_UNSUBSCRIBE_SALT)
        self._confirm = _ClockedSigner(keys, salt=PUBLIC_CONFIRM_SALT, **stamp)
        self._consent = Signer(keys, salt=CONSENT_SALT)
        self._legacy_unsubscribe = URLSafeSerializer(keys, salt=UNSUBSCRIBE_SALT)
        self._legacy_confirm = URLSafeTimedSerializer(
            keys, salt=CONFIRM_SALT, signer=_ClockedSigner, signer_kwargs=stamp
        )

    # unsubscribe

    def unsubscribe(self, public_id: str) -> str:
        """A token that never expires: an unsubscribe link must keep working in old mail."""
        return self._unsubscribe.sign(_checked(public_id)).decode("ascii")

    def read_unsubscribe(self, token: str) -> SubscriberRef:
        """Whom it names; TokenError if forged, foreign, misspelled or for another purpose."""
        _require_canonical(token)
        try:
            return _public_ref(self._unsubscribe.unsign(token))
        except BadData:
            pass
        try:
            return _legacy_ref(self._legacy_unsubscribe.loads(token))
        except BadData as exc:
            raise TokenError("invalid unsubscribe token") from exc

    # confirm

    def confirm(self, public_id: str) -> str:
        """A timestamped token: consent must be given while the request is fresh."""
        return self._confirm.sign(_checked(public_id)).decode("ascii")

    def read_confirm(self, token: str) -> SubscriberRef:
        """Whom it names; TokenExpiredError when genuine but too old, TokenError otherwise."""
        read = self.inspect_confirm(token)
        if read.expired:
            raise TokenExpiredError("confirm link expired")
        return read.subscriber

    def inspect_confirm(self, token: str) -> ConfirmToken:
        """Verify once and tell everything: an expired but genuine link still names its reader.

        TokenError for anything not signed by us for this purpose.
        """
        _require_canonical(token)
        try:
            return self._inspect(token, self._public_confirm, bytes, _public_ref)
        except TokenError:
            legacy = self._legacy_confirm
            return self._inspect(token, legacy.loads, legacy.load_payload, _legacy_ref)

    def _public_confirm(self, token: str, **options: Any) -> tuple[bytes, datetime]:
        value, signed = self._confirm.unsign(token, **options)
        return value, signed

    def _inspect(
        self,
        token: str,
        read: Callable[..., tuple[Any, datetime]],
        unpack: Callable[[bytes], Any],
        ref: Callable[[Any], SubscriberRef],
    ) -> ConfirmToken:
        """One format: `read` verifies, `unpack` reads an expired payload, `ref` names whom."""
        try:
            value, signed = read(token, max_age=self._max_age, return_timestamp=True)
            expired = False
        except SignatureExpired as exc:
            # itsdangerous also says "expired" for a stamp in the future; that is not our case
            # of an old, honest link, so it is refused as plainly invalid.
            if exc.date_signed is None or exc.payload is None or exc.date_signed > self._clock():
                raise TokenError("invalid confirm token") from exc
            try:
                value = unpack(exc.payload)
            except BadData as bad:
                raise TokenError("invalid confirm token") from bad
            signed, expired = exc.date_signed, True
        except BadData as exc:
            raise TokenError("invalid confirm token") from exc
        return ConfirmToken(ref(value), signed.astimezone(UTC), expired)

    # the consent wording a form showed

    def consent_version(self, version: str) -> str:
        """The form's hidden field: the wording's version, signed when the server rendered it."""
        return self._consent.sign(version).decode("ascii")

    def read_consent_version(self, value: str) -> str | None:
        """The version a form we rendered carried; None for anything the client made up."""
        try:
            _require_canonical(value)
            return self._consent.unsign(value).decode("utf-8")
        except (TokenError, BadData, UnicodeDecodeError):
            return None


def _require_canonical(token: str) -> None:
    """Refuse every spelling of a signature but ours (see the module docstring)."""
    _, dot, signature = token.rpartition(".")
    if not dot or not signature.isascii():
        raise TokenError("not a signed token")
    try:
        canonical = base64_encode(base64_decode(signature)).decode("ascii")
    except (BadData, ValueError) as exc:
        raise TokenError("not a signed token") from exc
    if canonical != signature:
        raise TokenError("the signature is not spelled as we sign it")


def _checked(public_id: str) -> str:
    if not isinstance(public_id, str) or not PUBLIC_ID.fullmatch(public_id):
        raise ValueError(f"expected a public id of 22 URL-safe characters, got {public_id!r}")
    return public_id


def _public_ref(value: bytes) -> SubscriberRef:
    return SubscriberRef(public_id=_public_id(value))


def _legacy_ref(value: object) -> SubscriberRef:
    return SubscriberRef(legacy_id=_legacy_id(value))


def _public_id(value: bytes) -> str:
    """A valid signature over something that is not a public id is still not our token."""
    text = value.decode("ascii", "replace")
    if not PUBLIC_ID.fullmatch(text):
        raise TokenError("token does not carry a public id")
    return text


def _legacy_id(value: object) -> int:
    """Old links carried the database id; one outside the id column's range names nobody."""
    if type(value) is not int or not 0 <= value <= MAX_LEGACY_ID:
        raise TokenError("token does not carry a subscriber id")
    return value


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click unsubscribe address served by the web app (also used in List-Unsubscribe)."""
    return f"{base_url.rstrip('/')}/u/{token}"


def preferences_url(base_url: str, token: str) -> str:
    """Where a reader changes how they get the newsletter; for now signed with the reader's
    unsubscribe token (the preferences page reads it the same way)."""
    return f"{base_url.rstrip('/')}/preferences/{token}"


def confirm_url(base_url: str, token: str) -> str:
    """The double opt-in confirmation address served by the web app."""
    return f"{base_url.rstrip('/')}/confirm/{token}"
