"""Signed link tokens: public ids, one spelling, purpose binding, tampering, key rotation, expiry
(RFC 8058 3.1), and the old format (database ids) still read for links already mailed."""

from __future__ import annotations

import re
import string
import time as time_module
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer, TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

from newsletter.errors import TokenError, TokenExpiredError
from newsletter.models import new_public_id
from newsletter.tokens import (
    CONFIRM_SALT,
    MAX_LEGACY_ID,
    PUBLIC_UNSUBSCRIBE_SALT,
    UNSUBSCRIBE_SALT,
    SubscriberRef,
    Tokens,
    confirm_url,
    unsubscribe_url,
)
from tests.support.clock import T0, FakeClock

DAY = timedelta(days=1)
URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
B64 = string.ascii_letters + string.digits + "-_"
PID = "d5AZo9IcVHIpSQfN3whYRg"


def make(keys: tuple[str, ...] = ("key-2026",), clock: FakeClock | None = None) -> Tokens:
    return Tokens(keys, timedelta(days=7), clock or FakeClock())


def legacy_unsubscribe(subscriber_id: object, key: str = "key-2026") -> str:
    """A link as mailed before public ids: the database id as the payload."""
    return URLSafeSerializer([key], salt=UNSUBSCRIBE_SALT).dumps(subscriber_id)


def test_public_ids_are_random_opaque_and_url_safe() -> None:
    ids = {new_public_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", pid) for pid in ids)


def test_round_trips_name_the_public_id() -> None:
    tokens = make()
    for public_id in (PID, new_public_id(), "-" * 22, "_" * 22):
        assert tokens.read_unsubscribe(tokens.unsubscribe(public_id)) == SubscriberRef(public_id)
        assert tokens.read_confirm(tokens.confirm(public_id)) == SubscriberRef(public_id)


def test_a_token_carries_no_database_id() -> None:
    """Two tokens of consecutive subscribers share nothing but the format."""
    tokens = make()
    first, second = tokens.unsubscribe(new_public_id()), tokens.unsubscribe(new_public_id())
    assert first.split(".")[0] != second.split(".")[0]
    assert "OA" not in {first.split(".")[0], second.split(".")[0]}  # base64 of "8", the old way


@pytest.mark.parametrize("kind", ["unsubscribe", "confirm"])
def test_exactly_one_spelling_of_a_token_verifies(kind: str) -> None:
    """Every other last character, and any character the base64 decoder would skip, fails."""
    tokens = make()
    token = getattr(tokens, kind)(PID)
    read = getattr(tokens, f"read_{kind}")
    assert read(token) == SubscriberRef(PID)
    variants = [token[:-1] + c for c in B64 if c != token[-1]]
    variants += [token[:-3] + junk + token[-3:] for junk in ("~", "!", "=", "*", "%41", "+")]
    variants += [token + "=", token + "==", token + ".", token[:-1], token + "A"]
    for variant in variants:
        with pytest.raises(TokenError):
            read(variant)


def test_old_format_unsubscribe_links_keep_working_and_are_never_issued() -> None:
    tokens = make()
    old = legacy_unsubscribe(8)
    assert old.startswith("OA.")  # what mail already sent carries
    assert tokens.read_unsubscribe(old) == SubscriberRef(legacy_id=8)
    for misspelt in (old[:-1] + c for c in B64 if c != old[-1]):
        with pytest.raises(TokenError):
            tokens.read_unsubscribe(misspelt)
    assert not tokens.unsubscribe(PID).startswith("OA.")


@pytest.mark.parametrize("payload", [2**63, 2**31, -1, True, "8", None, [8], 1.5])
def test_an_old_format_payload_that_is_no_id_we_store_names_nobody(payload: object) -> None:
    """A validly signed 2**63 would overflow the id column: it is refused before any query."""
    with pytest.raises(TokenError):
        make().read_unsubscribe(legacy_unsubscribe(payload))


class SignedAtT0(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(T0.timestamp())


def test_old_format_confirm_links_are_read_until_they_expire() -> None:
    clock = FakeClock()
    tokens = make(clock=clock)
    old = URLSafeTimedSerializer(["key-2026"], salt=CONFIRM_SALT, signer=SignedAtT0).dumps(5)
    read = tokens.inspect_confirm(old)
    assert read.subscriber == SubscriberRef(legacy_id=5) and not read.expired
    clock.now = T0 + 8 * DAY
    late = tokens.inspect_confirm(old)
    assert late.expired and late.subscriber == SubscriberRef(legacy_id=5)


def test_a_token_serves_only_its_own_purpose() -> None:
    tokens = make()
    with pytest.raises(TokenError):
        tokens.read_unsubscribe(tokens.confirm(PID))
    with pytest.raises(TokenError):
        tokens.read_confirm(tokens.unsubscribe(PID))
    with pytest.raises(TokenError):
        tokens.read_confirm(legacy_unsubscribe(8))
    assert tokens.read_consent_version(tokens.unsubscribe(PID)) is None


@pytest.mark.parametrize("kind", ["unsubscribe", "confirm"])
def test_any_one_character_tamper_is_refused(kind: str) -> None:
    tokens = make()
    token = getattr(tokens, kind)(PID)
    read = getattr(tokens, f"read_{kind}")
    for index, char in enumerate(token):
        for replacement in ("A", "x", "0", "_") if char not in "Ax0_" else ("B", "y", "1", "-"):
            with pytest.raises(TokenError):
                read(token[:index] + replacement + token[index + 1 :])


@given(st.text(max_size=120))
def test_garbage_is_refused(junk: str) -> None:
    tokens = make()
    with pytest.raises(TokenError):
        tokens.read_unsubscribe(junk)
    with pytest.raises(TokenError):
        tokens.read_confirm(junk)
    assert tokens.read_consent_version(junk) is None


def test_a_foreign_key_is_refused() -> None:
    ours, theirs = make(("ours",)), make(("theirs",))
    with pytest.raises(TokenError):
        ours.read_unsubscribe(theirs.unsubscribe(PID))
    with pytest.raises(TokenError):
        ours.read_confirm(theirs.confirm(PID))
    with pytest.raises(TokenError):
        ours.read_unsubscribe(legacy_unsubscribe(8, key="theirs"))
    assert ours.read_consent_version(theirs.consent_version("2026-11-v1")) is None


def test_rotation_keeps_old_links_working_and_signs_with_the_newest_key() -> None:
    old_only = make(("old",))
    rotated = make(("old", "new"))
    new_only = make(("new",))
    assert rotated.read_unsubscribe(old_only.unsubscribe(PID)) == SubscriberRef(PID)
    assert rotated.read_confirm(old_only.confirm(PID)) == SubscriberRef(PID)
    assert rotated.read_unsubscribe(legacy_unsubscribe(11, key="old")).legacy_id == 11
    fresh = rotated.unsubscribe(PID)
    assert new_only.read_unsubscribe(fresh) == SubscriberRef(PID)
    with pytest.raises(TokenError):
        old_only.read_unsubscribe(fresh)
    with pytest.raises(TokenError):
        old_only.read_confirm(rotated.confirm(PID))


def test_confirm_tokens_expire_after_max_age() -> None:
    clock = FakeClock()
    tokens = make(clock=clock)
    token = tokens.confirm(PID)
    clock.now = T0 + 6 * DAY
    assert tokens.read_confirm(token) == SubscriberRef(PID)
    clock.now = T0 + 8 * DAY
    with pytest.raises(TokenExpiredError, match=r"\Aconfirm link expired\Z"):
        tokens.read_confirm(token)
    expired = tokens.inspect_confirm(token)
    assert expired.expired and expired.subscriber == SubscriberRef(PID)
    assert expired.issued_at == T0


def test_a_confirm_token_from_the_future_is_invalid_not_expired() -> None:
    clock = FakeClock(T0 + DAY)
    token = make(clock=clock).confirm(PID)
    clock.now = T0
    with pytest.raises(TokenError) as caught:
        make(clock=clock).read_confirm(token)
    assert not isinstance(caught.value, TokenExpiredError)


def test_unsubscribe_tokens_never_expire() -> None:
    clock = FakeClock()
    tokens = make(clock=clock)
    token = tokens.unsubscribe(PID)
    clock.now = T0 + 400 * DAY
    assert tokens.read_unsubscribe(token) == SubscriberRef(PID)


def test_tokens_are_short_and_url_safe() -> None:
    tokens = make(("a" * 64, "b" * 64))
    for _ in range(50):
        public_id = new_public_id()
        for token in (tokens.unsubscribe(public_id), tokens.confirm(public_id)):
            assert len(token) <= 57, token
            assert URL_SAFE.fullmatch(token), token
            assert "@" not in token and "%" not in token


def test_the_consent_version_field_is_what_we_signed() -> None:
    tokens = make()
    field = tokens.consent_version("2026-11-v1")
    assert tokens.read_consent_version(field) == "2026-11-v1"
    for forged in ("2026-11-v1", "1999-01-forged", field.replace("v1", "v2"), field + "x", ""):
        assert tokens.read_consent_version(forged) is None


def test_bad_construction_and_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        Tokens([], timedelta(days=7), FakeClock())
    with pytest.raises(ValueError):
        Tokens(["ok", ""], timedelta(days=7), FakeClock())
    with pytest.raises(ValueError):
        Tokens(["ok"], timedelta(0), FakeClock())
    for bad in ("", "short", PID + "x", PID[:-1] + ".", 7):
        with pytest.raises(ValueError):
            make().unsubscribe(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            make().confirm(bad)  # type: ignore[arg-type]


def test_link_builders() -> None:
    base = "https://ree-news.example.com/newsletter"
    token = make().unsubscribe(PID)
    assert unsubscribe_url(base, token) == f"{base}/u/{token}"
    assert confirm_url(base, token) == f"{base}/confirm/{token}"
    assert unsubscribe_url(base + "/", token) == f"{base}/u/{token}"
    assert set(unsubscribe_url(base, token)) <= set(string.printable) - set(" <>\"'@")


@pytest.mark.parametrize("subscriber_id", [0, 1, MAX_LEGACY_ID])
def test_an_old_format_id_anywhere_in_the_id_columns_range_is_read(subscriber_id: int) -> None:
    """Both ends of the range: 0 and 2**31 - 1 name a subscriber, -1 and 2**31 do not."""
    read = make().read_unsubscribe(legacy_unsubscribe(subscriber_id))
    assert read == SubscriberRef(legacy_id=subscriber_id)


def test_a_genuine_signature_over_non_ascii_bytes_names_nobody() -> None:
    """Refused as a TokenError like any other bad link (the web app turns that into "link
    invalid"), not as a UnicodeDecodeError."""
    signed = Signer(["key-2026"], salt=PUBLIC_UNSUBSCRIBE_SALT).sign("é" * 11).decode("utf-8")
    with pytest.raises(TokenError, match=r"\Atoken does not carry a public id\Z"):
        make().read_unsubscribe(signed)


def test_each_refusal_says_which_check_failed() -> None:
    """The message tells a developer why a link was refused: its shape, its spelling, its
    signature, or what it carries."""
    tokens = make()
    token = tokens.unsubscribe(PID)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    # the same MAC spelled otherwise: the last character's two unused bits set differently
    misspelt = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    cases = [
        (tokens.read_unsubscribe, "no-dot-here", "not a signed token"),
        (tokens.read_unsubscribe, f"{PID}.A", "not a signed token"),  # one base64 character
        (tokens.read_unsubscribe, misspelt, "the signature is not spelled as we sign it"),
        (tokens.read_unsubscribe, tokens.confirm(PID), "invalid unsubscribe token"),
        (tokens.read_unsubscribe, legacy_unsubscribe(-1), "token does not carry a subscriber id"),
        (tokens.read_confirm, token, "invalid confirm token"),
    ]
    for read, value, message in cases:
        with pytest.raises(TokenError, match=rf"\A{re.escape(message)}\Z"):
            read(value)


def test_a_confirm_token_from_the_future_says_it_is_invalid() -> None:
    clock = FakeClock(T0 + DAY)
    token = make(clock=clock).confirm(PID)
    clock.now = T0
    with pytest.raises(TokenError, match=r"\Ainvalid confirm token\Z"):
        make(clock=clock).read_confirm(token)


def test_an_expired_old_format_confirm_token_without_an_id_says_it_is_invalid() -> None:
    """Genuine and expired, but its payload is no JSON id: refused, not reported as expired."""
    old = URLSafeTimedSerializer(["key-2026"], salt=CONFIRM_SALT, signer=SignedAtT0)
    token = old.make_signer().sign(b"not-json").decode("ascii")
    with pytest.raises(TokenError, match=r"\Ainvalid confirm token\Z") as caught:
        make(clock=FakeClock(T0 + 8 * DAY)).inspect_confirm(token)
    assert not isinstance(caught.value, TokenExpiredError)


def test_issued_at_is_in_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compared with stored UTC instants: a host set to Tokyo time must not shift it to +09:00."""
    token = make().confirm(PID)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time_module.tzset()
    try:
        issued = make().inspect_confirm(token).issued_at
    finally:
        monkeypatch.undo()
        time_module.tzset()
    assert issued == T0 and issued.utcoffset() == timedelta(0)
    assert issued.isoformat() == "2026-11-28T09:00:00+00:00"


def test_a_bad_key_set_max_age_or_id_is_refused_saying_what_is_wrong() -> None:
    """The operator sees these at startup (keys, max age) or a developer in a traceback (id)."""
    keys = r"\ATokens needs at least one non-empty secret key \(oldest first\)\Z"
    with pytest.raises(ValueError, match=keys):
        Tokens([], timedelta(days=7), FakeClock())
    with pytest.raises(ValueError, match=keys):
        Tokens(["ok", ""], timedelta(days=7), FakeClock())
    with pytest.raises(ValueError, match=r"\Aconfirm_max_age must be positive\Z"):
        Tokens(["ok"], timedelta(0), FakeClock())
    expected = r"\Aexpected a public id of 22 URL-safe characters, got 'short'\Z"
    with pytest.raises(ValueError, match=expected):
        make().unsubscribe("short")


def test_a_confirm_max_age_of_one_day_is_allowed_and_holds() -> None:
    """Any positive age is a valid setting, a day (a common choice) included."""
    clock = FakeClock()
    tokens = Tokens(["ok"], timedelta(days=1), clock)
    token = tokens.confirm(PID)
    clock.now = T0 + DAY
    assert tokens.read_confirm(token) == SubscriberRef(PID)
    clock.now = T0 + DAY + timedelta(seconds=1)
    with pytest.raises(TokenExpiredError):
        tokens.read_confirm(token)


def test_an_old_format_confirm_token_from_the_future_says_it_is_invalid() -> None:
    """Not "expired": a stamp ahead of the clock is no honest old link, in either format."""
    future = URLSafeTimedSerializer(["key-2026"], salt=CONFIRM_SALT, signer=SignedAtT0).dumps(5)
    with pytest.raises(TokenError, match=r"\Ainvalid confirm token\Z") as caught:
        make(clock=FakeClock(T0 - DAY)).inspect_confirm(future)
    assert not isinstance(caught.value, TokenExpiredError)


@given(
    keys=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=3),
    public_id=st.text(alphabet=B64, min_size=22, max_size=22),
)
def test_an_unsubscribe_token_is_itsdangerous_signers_spelling(
    keys: list[str], public_id: str
) -> None:
    """The send signs with its key derived once and one HMAC call (tokens._KeyedSigner): the
    same bytes as itsdangerous' own Signer, newest key, for any key set and id."""
    reference = Signer(keys, salt=PUBLIC_UNSUBSCRIBE_SALT).sign(public_id).decode()
    assert make(tuple(keys)).unsubscribe(public_id) == reference
