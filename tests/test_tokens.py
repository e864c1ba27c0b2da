"""Signed link tokens: purpose binding, tampering, key rotation, expiry (email standards D)."""

from __future__ import annotations

import re
import string
from datetime import timedelta

import pytest

from newsletter.errors import TokenError, TokenExpiredError
from newsletter.tokens import Tokens, confirm_url, unsubscribe_url

DAY = 24 * 3600
T0 = 1_795_000_000.0  # a fixed "now" in late 2026
URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


class FakeClock:
    """Stands in for time.time so a test can move time forward without sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(keys: tuple[str, ...] = ("key-2026",), clock: FakeClock | None = None) -> Tokens:
    return Tokens(keys, timedelta(days=7), clock or FakeClock())


def test_round_trips() -> None:
    tokens = make()
    for subscriber_id in (0, 1, 42, 9_876_543):
        assert tokens.read_unsubscribe(tokens.unsubscribe(subscriber_id)) == subscriber_id
        assert tokens.read_confirm(tokens.confirm(subscriber_id)) == subscriber_id


def test_a_token_serves_only_its_own_purpose() -> None:
    tokens = make()
    with pytest.raises(TokenError):
        tokens.read_unsubscribe(tokens.confirm(7))
    with pytest.raises(TokenError):
        tokens.read_confirm(tokens.unsubscribe(7))


@pytest.mark.parametrize("kind", ["unsubscribe", "confirm"])
def test_any_one_character_tamper_is_refused(kind: str) -> None:
    tokens = make()
    make_token = getattr(tokens, kind)
    read = getattr(tokens, f"read_{kind}")
    token = make_token(4242)
    for index, char in enumerate(token):
        for replacement in ("A", "x", "0", "_") if char not in "Ax0_" else ("B", "y", "1", "-"):
            forged = token[:index] + replacement + token[index + 1 :]
            try:
                value = read(forged)
            except TokenError:
                continue
            # base64 of a 20-byte MAC ends in a character with two unused bits: changing only
            # those decodes to the same MAC and the same id, which forges nothing.
            assert index == len(token) - 1 and value == 4242, (index, forged)


@pytest.mark.parametrize("junk", ["", ".", "abc", "MQ", "a.b.c.d", "..", "MQ.", "ünïcode.x"])
def test_garbage_is_refused(junk: str) -> None:
    tokens = make()
    with pytest.raises(TokenError):
        tokens.read_unsubscribe(junk)
    with pytest.raises(TokenError):
        tokens.read_confirm(junk)


def test_a_foreign_key_is_refused() -> None:
    ours, theirs = make(("ours",)), make(("theirs",))
    with pytest.raises(TokenError):
        ours.read_unsubscribe(theirs.unsubscribe(5))
    with pytest.raises(TokenError):
        ours.read_confirm(theirs.confirm(5))


def test_rotation_keeps_old_links_working_and_signs_with_the_newest_key() -> None:
    old_only = make(("old",))
    rotated = make(("old", "new"))
    new_only = make(("new",))
    old_link = old_only.unsubscribe(11)
    assert rotated.read_unsubscribe(old_link) == 11
    assert rotated.read_confirm(old_only.confirm(11)) == 11
    fresh = rotated.unsubscribe(12)
    assert new_only.read_unsubscribe(fresh) == 12
    with pytest.raises(TokenError):
        old_only.read_unsubscribe(fresh)
    with pytest.raises(TokenError):
        old_only.read_confirm(rotated.confirm(12))


def test_confirm_tokens_expire_after_max_age() -> None:
    clock = FakeClock()
    tokens = make(clock=clock)
    token = tokens.confirm(3)
    clock.now = T0 + 6 * DAY
    assert tokens.read_confirm(token) == 3
    clock.now = T0 + 8 * DAY
    with pytest.raises(TokenExpiredError):
        tokens.read_confirm(token)


def test_a_confirm_token_from_the_future_is_invalid_not_expired() -> None:
    clock = FakeClock(T0 + DAY)
    token = make(clock=clock).confirm(3)
    clock.now = T0
    with pytest.raises(TokenError) as caught:
        make(clock=clock).read_confirm(token)
    assert not isinstance(caught.value, TokenExpiredError)


def test_unsubscribe_tokens_never_expire() -> None:
    clock = FakeClock()
    tokens = make(clock=clock)
    token = tokens.unsubscribe(8)
    clock.now = T0 + 400 * DAY
    assert tokens.read_unsubscribe(token) == 8


def test_tokens_are_short_and_url_safe() -> None:
    tokens = make(("a" * 64, "b" * 64))
    for subscriber_id in (1, 123_456, 9_999_999):
        for token in (tokens.unsubscribe(subscriber_id), tokens.confirm(subscriber_id)):
            assert len(token) <= 45, token
            assert URL_SAFE.fullmatch(token), token
            assert "@" not in token and "%" not in token


def test_tokens_differ_per_subscriber() -> None:
    tokens = make()
    assert len({tokens.unsubscribe(n) for n in range(1, 50)}) == 49


def test_bad_construction_and_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        Tokens([], timedelta(days=7))
    with pytest.raises(ValueError):
        Tokens(["ok", ""], timedelta(days=7))
    with pytest.raises(ValueError):
        Tokens(["ok"], timedelta(0))
    with pytest.raises(ValueError):
        make().unsubscribe(-1)
    with pytest.raises(ValueError):
        make().confirm(True)


def test_link_builders() -> None:
    base = "https://ree-news.example.com/newsletter"
    token = make().unsubscribe(1)
    assert unsubscribe_url(base, token) == f"{base}/u/{token}"
    assert confirm_url(base, token) == f"{base}/confirm/{token}"
    assert unsubscribe_url(base + "/", token) == f"{base}/u/{token}"
    assert set(unsubscribe_url(base, token)) <= set(string.printable) - set(" <>\"'@")
