"""Signed, purpose-bound tokens for the links in our mail (unsubscribe, confirm).

Why this shape:
- One salt per purpose, so a confirm token can never be replayed as an unsubscribe token or the
  other way round (email standards D.22).
- Unsubscribe tokens never expire: the law wants the link to work for at least 30 days and a
  reader may open an old issue a year later (B.18, D.23). Confirm tokens do expire.
- Keys are ordered oldest to newest; itsdangerous signs with the last one and verifies with any,
  so a key can be rotated without breaking the links in mail already sent.
- The payload is the subscriber id alone and the signature is HMAC-SHA1 (itsdangerous' default,
  sound as an HMAC), which keeps a token near 30-40 URL-safe characters: short enough that the
  List-Unsubscribe header is never RFC 2047-encoded (B.11) and free of '@' (B.13).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from itsdangerous import (
    BadData,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from .errors import TokenError, TokenExpiredError

UNSUBSCRIBE_SALT = "ree-newsletter.unsubscribe"
CONFIRM_SALT = "ree-newsletter.confirm"


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner whose notion of "now" is injected, so expiry is testable without waiting.

    itsdangerous asks `get_timestamp` both when stamping and when computing a token's age.
    """

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class Tokens:
    """Makes and reads the tokens of both purposes with one ordered set of keys."""

    def __init__(
        self,
        secret_keys: Sequence[str],
        confirm_max_age: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = list(secret_keys)
        if not keys or not all(keys):
            raise ValueError("Tokens needs at least one non-empty secret key (oldest first)")
        if confirm_max_age <= timedelta(0):
            raise ValueError("confirm_max_age must be positive")
        self._max_age = int(confirm_max_age.total_seconds())
        self._clock = clock
        self._unsubscribe = URLSafeSerializer(keys, salt=UNSUBSCRIBE_SALT)
        self._confirm = URLSafeTimedSerializer(
            keys, salt=CONFIRM_SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock}
        )

    def unsubscribe(self, subscriber_id: int) -> str:
        """A token that never expires: an unsubscribe link must keep working in old mail."""
        return self._unsubscribe.dumps(_checked_id(subscriber_id))

    def read_unsubscribe(self, token: str) -> int:
        """The subscriber id; TokenError if the token is forged, foreign or for another purpose."""
        try:
            value = self._unsubscribe.loads(token)
        except BadData as exc:
            raise TokenError("invalid unsubscribe token") from exc
        return _payload_id(value)

    def confirm(self, subscriber_id: int) -> str:
        """A timestamped token: consent must be given while the request is fresh."""
        return self._confirm.dumps(_checked_id(subscriber_id))

    def read_confirm(self, token: str) -> int:
        """The subscriber id; TokenExpiredError when genuine but too old, TokenError otherwise."""
        try:
            value = self._confirm.loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            # itsdangerous also says "expired" for a stamp in the future; that is not our case
            # of an old, honest link, so it is refused as plainly invalid.
            signed = exc.date_signed
            if signed is None or signed.timestamp() > self._clock():
                raise TokenError("invalid confirm token") from exc
            raise TokenExpiredError("confirm link expired") from exc
        except BadData as exc:
            raise TokenError("invalid confirm token") from exc
        return _payload_id(value)


def _checked_id(subscriber_id: int) -> int:
    """Ids are database keys; 0 is allowed because a test copy to an unknown address uses it."""
    if type(subscriber_id) is not int or subscriber_id < 0:
        raise ValueError(f"expected a subscriber id >= 0, got {subscriber_id!r}")
    return subscriber_id


def _payload_id(value: object) -> int:
    """A valid signature over something that is not a subscriber id is still not our token."""
    if type(value) is not int or value < 0:
        raise TokenError("token does not carry a subscriber id")
    return value


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click unsubscribe address served by the web app (also used in List-Unsubscribe)."""
    return f"{base_url.rstrip('/')}/u/{token}"


def confirm_url(base_url: str, token: str) -> str:
    """The double opt-in confirmation address served by the web app."""
    return f"{base_url.rstrip('/')}/confirm/{token}"
