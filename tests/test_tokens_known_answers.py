"""Links in mail already sent must keep working: the token formats are frozen, byte for byte.

A fixed key, public id and instant give the exact tokens spelled out below. Each one is also
derived here from the standard library alone (HMAC-SHA1 over a key derived from salt and secret,
unpadded URL-safe base64), so the salts and the layout are written down where a reader can
check them, and any change to a salt, the separator, the timestamp encoding or the MAC breaks
a test instead of every unsubscribe link in people's inboxes. The properties say the same for
any id and key: a token reads back as whom it names, and any edit of it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import TokenError, TokenExpiredError
from newsletter.tokens import (
    SubscriberRef,
    Tokens,
    confirm_url,
    preferences_url,
    unsubscribe_url,
)
from tests.support.clock import T0, FakeClock

KEY = "known-answer-key"
PID = "d5AZo9IcVHIpSQfN3whYRg"
STAMP = 1795856400  # T0, 2026-11-28 09:00 UTC, as seconds since the epoch

UNSUBSCRIBE = "d5AZo9IcVHIpSQfN3whYRg.2bwQ0gUPd7daAfQs1KpjV_RuI3E"
CONFIRM = "d5AZo9IcVHIpSQfN3whYRg.awqYEA.ltYUF2Nara6HMDmB7TiGUe5Pyk8"
CONSENT = "2026-11-v1.zWX1QUWP59boF4K4cEf9BNTIykc"
LEGACY_UNSUBSCRIBE = "OA.VwepbKoMjE2DH2j6Lccw3pt4dek"  # subscriber id 8, before public ids
LEGACY_CONFIRM = "NQ.awqYEA.V_kF7wMYE73X0yXDREQvpbuUMWs"  # subscriber id 5, signed at T0

PUBLIC_IDS = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=22, max_size=22
)
KEYS = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=3)


def tokens(keys: tuple[str, ...] = (KEY,), clock: FakeClock | None = None) -> Tokens:
    return Tokens(keys, timedelta(days=7), clock or FakeClock(T0))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def mac(salt: str, value: str, key: str = KEY) -> str:
    """itsdangerous' Signer with its defaults: HMAC-SHA1 under sha1(salt + "signer" + key)."""
    derived = hashlib.sha1(salt.encode() + b"signer" + key.encode()).digest()
    return b64(hmac.new(derived, value.encode(), hashlib.sha1).digest())


def test_the_spelled_out_tokens_follow_the_documented_construction() -> None:
    """The literals above are not copied from the code's output alone: they are these formulas."""
    stamp = b64(STAMP.to_bytes(4, "big"))
    assert f"{PID}.{mac('ree-newsletter.unsubscribe.public', PID)}" == UNSUBSCRIBE
    assert f"{PID}.{stamp}.{mac('ree-newsletter.confirm.public', f'{PID}.{stamp}')}" == CONFIRM
    assert f"2026-11-v1.{mac('ree-newsletter.consent-version', '2026-11-v1')}" == CONSENT
    assert f"OA.{mac('ree-newsletter.unsubscribe', 'OA')}" == LEGACY_UNSUBSCRIBE  # b64("8")
    legacy_confirm_value = f"NQ.{stamp}"  # b64("5"), the JSON of the id
    assert (
        f"{legacy_confirm_value}.{mac('ree-newsletter.confirm', legacy_confirm_value)}"
        == LEGACY_CONFIRM
    )


def test_an_unsubscribe_token_is_issued_exactly_as_in_mail_already_sent() -> None:
    assert tokens().unsubscribe(PID) == UNSUBSCRIBE
    assert tokens().read_unsubscribe(UNSUBSCRIBE) == SubscriberRef(public_id=PID)


def test_an_unsubscribe_token_reads_the_same_years_later_and_after_a_key_rotation() -> None:
    later = FakeClock(T0 + timedelta(days=3 * 365))
    rotated = tokens(("older-key", KEY, "newest-key"), later)
    assert rotated.read_unsubscribe(UNSUBSCRIBE) == SubscriberRef(public_id=PID)


def test_a_confirm_token_is_issued_with_the_documented_timestamp_and_salt() -> None:
    assert tokens().confirm(PID) == CONFIRM
    read = tokens().inspect_confirm(CONFIRM)
    assert (read.subscriber, read.issued_at, read.expired) == (SubscriberRef(PID), T0, False)


def test_a_confirm_token_expires_one_second_after_its_seven_days() -> None:
    """itsdangerous refuses an age strictly greater than max_age: 7 days is still fresh."""
    clock = FakeClock(T0 + timedelta(days=7))
    assert tokens(clock=clock).read_confirm(CONFIRM) == SubscriberRef(PID)
    clock.now = T0 + timedelta(days=7, seconds=1)
    with pytest.raises(TokenExpiredError):
        tokens(clock=clock).read_confirm(CONFIRM)
    late = tokens(clock=clock).inspect_confirm(CONFIRM)
    assert (late.subscriber, late.issued_at, late.expired) == (SubscriberRef(PID), T0, True)


def test_the_consent_field_is_signed_exactly_as_documented() -> None:
    assert tokens().consent_version("2026-11-v1") == CONSENT
    assert tokens().read_consent_version(CONSENT) == "2026-11-v1"


def test_links_mailed_before_public_ids_still_name_their_database_ids() -> None:
    assert tokens().read_unsubscribe(LEGACY_UNSUBSCRIBE) == SubscriberRef(legacy_id=8)
    read = tokens().inspect_confirm(LEGACY_CONFIRM)
    assert (read.subscriber, read.issued_at, read.expired) == (
        SubscriberRef(legacy_id=5),
        T0,
        False,
    )
    clock = FakeClock(T0 + timedelta(days=8))
    expired = tokens(clock=clock).inspect_confirm(LEGACY_CONFIRM)
    assert (expired.subscriber, expired.expired) == (SubscriberRef(legacy_id=5), True)
    with pytest.raises(TokenExpiredError):
        tokens(clock=clock).read_confirm(LEGACY_CONFIRM)


def test_a_known_token_is_refused_for_the_other_purpose() -> None:
    with pytest.raises(TokenError):
        tokens().read_confirm(UNSUBSCRIBE)
    with pytest.raises(TokenError):
        tokens().read_unsubscribe(CONFIRM)
    with pytest.raises(TokenError):
        tokens().read_confirm(LEGACY_UNSUBSCRIBE)
    with pytest.raises(TokenError):
        tokens().read_unsubscribe(LEGACY_CONFIRM)
    assert tokens().read_consent_version(UNSUBSCRIBE) is None


# Properties: any public id, any keys.

FAST = settings(max_examples=150, derandomize=True, deadline=None)


@FAST
@given(PUBLIC_IDS, KEYS)
def test_every_token_reads_back_as_the_id_it_was_made_for(public_id: str, keys: list[str]) -> None:
    made = tokens(tuple(keys))
    assert made.read_unsubscribe(made.unsubscribe(public_id)) == SubscriberRef(public_id)
    confirm = made.inspect_confirm(made.confirm(public_id))
    assert (confirm.subscriber, confirm.issued_at, confirm.expired) == (
        SubscriberRef(public_id),
        T0,
        False,
    )
    assert made.read_consent_version(made.consent_version(public_id)) == public_id


EDITS = st.sampled_from(["replace", "drop", "add"])
CHARS = st.characters(codec="utf-8")  # every character but lone surrogates


def edited(token: str, edit: str, where: int, char: str) -> str:
    where %= len(token) + (edit == "add")
    if edit == "drop":
        return token[:where] + token[where + 1 :]
    if edit == "add":
        return token[:where] + char + token[where:]
    return token[:where] + char + token[where + 1 :]


@settings(FAST, suppress_health_check=[HealthCheck.filter_too_much])
@given(PUBLIC_IDS, EDITS, st.integers(min_value=0), CHARS)
def test_any_changed_dropped_or_added_character_is_refused(
    public_id: str, edit: str, where: int, char: str
) -> None:
    made = tokens()
    for kind in ("unsubscribe", "confirm"):
        token = getattr(made, kind)(public_id)
        forged = edited(token, edit, where, char)
        if forged == token:
            continue  # replacing a character by itself is no edit
        with pytest.raises(TokenError):
            getattr(made, f"read_{kind}")(forged)
    field = made.consent_version(public_id)
    forged = edited(field, edit, where, char)
    if forged != field:
        assert made.read_consent_version(forged) is None


def test_link_builders_join_the_base_url_with_exactly_one_slash() -> None:
    """A base ending in a letter such as X keeps it; a trailing slash is not doubled."""
    for base in ("https://news.example/boX", "https://news.example/boX/"):
        assert unsubscribe_url(base, UNSUBSCRIBE) == f"https://news.example/boX/u/{UNSUBSCRIBE}"
        assert preferences_url(base, UNSUBSCRIBE) == (
            f"https://news.example/boX/preferences/{UNSUBSCRIBE}"
        )
        assert confirm_url(base, CONFIRM) == f"https://news.example/boX/confirm/{CONFIRM}"
