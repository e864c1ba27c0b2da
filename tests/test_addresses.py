"""The address rules: what we store (A-label domains), what we refuse (what the relay cannot
deliver, 64-octet local parts), and the mailbox an address reaches (for the limits)."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.addresses import mailbox_key, normalize_address
from newsletter.errors import AddressError


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  Reader@Example.ORG ", "reader@example.org"),
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
        ("ann@XN--BCHER-KVA.example", "ann@xn--bcher-kva.example"),
        ("Jane.Doe+News@Gmail.com", "jane.doe+news@gmail.com"),  # as typed, lower-cased
        ("a" * 64 + "@example.org", "a" * 64 + "@example.org"),
    ],
)
def test_the_stored_form(typed: str, stored: str) -> None:
    assert normalize_address(typed) == stored


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("rëader@example.org", "accented or non-Latin letters before the @-sign"),
        ("用户@例子.example", "accented or non-Latin letters before the @-sign"),
        ("a" * 65 + "@example.org", "65 bytes long; mail servers accept at most 64"),
        ("ann@example.org\r\nBcc: x@y", "line break"),
        ("no-at-sign", "@-sign"),
    ],
)
def test_what_cannot_be_delivered_is_refused_with_a_reason(typed: str, says: str) -> None:
    with pytest.raises(AddressError) as refused:
        normalize_address(typed)
    assert says in refused.value.reason


def test_a_relay_with_smtputf8_takes_a_non_ascii_local_part_up_to_64_octets() -> None:
    assert normalize_address("Rëader@Bücher.example", smtputf8=True) == (
        "rëader@xn--bcher-kva.example"
    )
    assert normalize_address("é" * 32 + "@example.org", smtputf8=True) == "é" * 32 + "@example.org"
    with pytest.raises(AddressError, match="66 bytes long"):
        normalize_address("é" * 33 + "@example.org", smtputf8=True)


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("jane.doe@gmail.com", "janedoe@gmail.com"),
        ("j.a.n.e.doe+news+x@gmail.com", "janedoe@gmail.com"),
        ("janedoe@googlemail.com", "janedoe@gmail.com"),
        ("jane.doe+news@example.org", "jane.doe@example.org"),
        ("+news@example.org", "+news@example.org"),
        ("...@gmail.com", "...@gmail.com"),
        ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
    ],
)
def test_the_mailbox_an_address_reaches(address: str, mailbox: str) -> None:
    assert mailbox_key(address) == mailbox


@given(st.emails())
def test_the_mailbox_of_a_stored_address_is_stable_and_never_longer(raw: str) -> None:
    try:
        stored = normalize_address(raw)
    except AddressError:
        return
    mailbox = mailbox_key(stored)
    assert mailbox_key(mailbox) == mailbox
    assert len(mailbox) <= len(stored) and mailbox.rpartition("@")[2] in (
        stored.rpartition("@")[2],
        "gmail.com",
    )


LOCAL_CHARS = "abcXYZ019!#$%&'*+/=?^_`{|}~-."
DOMAIN_CHARS = "abcXYZ019-."


@settings(max_examples=400, deadline=None)
@example(local="0", domain="0.00--0", tld="com")  # Hypothesis found it: a reserved IDNA label
@given(
    st.text(LOCAL_CHARS, min_size=0, max_size=70),
    st.text(DOMAIN_CHARS, min_size=0, max_size=40),
    st.sampled_from(["com", "org", "Example", "io", "x", "test", "local", "123", "museum"]),
)
def test_the_fast_path_answers_as_the_validator_does(local: str, domain: str, tld: str) -> None:
    """Whatever the plain-address shortcut accepts, the validator accepts with the same result."""
    from newsletter.addresses import _plain

    candidate = f"{local}@{domain}.{tld}" if domain else f"{local}@{tld}"
    fast = _plain(candidate)
    if fast is None:
        return
    try:
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise AssertionError(f"shortcut took {candidate!r}, validator refuses: {exc}") from None
    assert fast == f"{result.local_part.lower()}@{result.ascii_domain.lower()}"


@pytest.mark.parametrize(
    "address",
    ["a..b@example.org", ".a@example.org", "a.@example.org", "a@-x.org", "a@x-.org",
     "a@example.test", "a@foo.localhost", "a@123", "a@example.123", "a b@example.org",
     "a@example..org", "a@example.org.", "a@ex_ample.org", "a@[127.0.0.1]", '"a b"@example.org',
     "x" * 65 + "@example.org", "a@ab--c.org", "a@xn--zz.org"],
)  # fmt: skip
def test_what_the_shortcut_leaves_to_the_validator_is_still_refused(address: str) -> None:
    with pytest.raises(AddressError):
        normalize_address(address)
