"""Any reader the address rules let in and any feed title give a standards-clean message.

The title comes from a feed anyone can publish, the address from a sign-up form anyone can
post: neither may break the message, add a header, or write a line longer than RFC 5322's 998
octets. Both go the way they go in a send: the title through the digest renderer (subject and
parts), the address through the address rules and `envelope_address`.
"""

from __future__ import annotations

import email
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from newsletter.addresses import normalize_address
from newsletter.compose import MessageTemplate, envelope_address
from newsletter.config import Settings, load_settings
from newsletter.errors import AddressError
from newsletter.models import Recipient
from newsletter.render import DigestRenderer
from tests.render.test_render import article

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 28)
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
HEADERS = {
    "to", "message-id", "list-unsubscribe", "date", "from", "subject", "list-id",
    "list-unsubscribe-post", "list-archive", "precedence", "auto-submitted", "mime-version",
    "content-type",
}  # fmt: skip
PROPERTY = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@cache
def shipped() -> tuple[Settings, DigestRenderer]:
    config = load_settings(ROOT / "config.toml", environ={})
    return config, DigestRenderer(config)


LABEL = st.text(
    st.characters(categories=("Ll", "Lu", "Nd"), max_codepoint=0x2FFF), min_size=1, max_size=12
)
LOCAL = st.from_regex(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9_-]{1,10}){0,2}", fullmatch=True
)
# ASCII addresses of every shape the rules take, and internationalised domains (kept as
# A-labels, so no relay needs SMTPUTF8 for them).
ADDRESSES = st.one_of(
    st.emails(),
    st.builds(
        lambda local, label, tld: f"{local}@{label}.{tld}",
        LOCAL,
        LABEL,
        st.sampled_from(["example", "org", "de"]),
    ),
)
TITLES = st.one_of(
    st.text(max_size=300),
    st.text(st.sampled_from("ab \r\n\t\x00\x0b\u2028{}%#<>&\"'=?é€"), max_size=200),
    st.builds("=?utf-8?q?{}?=".format, st.text(st.sampled_from("aB_=0DA:@ "), max_size=40)),
)


def accepted(raw: str) -> str:
    """The address as a send mails it, or the example is one the rules refuse."""
    try:
        return envelope_address(normalize_address(raw))
    except AddressError:
        assume(False)
        raise


def message_for(title: str, address: str) -> tuple[bytes, EmailMessage, str]:
    config, renderer = shipped()
    digest = renderer.render([article(0, title=title), article(1)], DAY)
    template = MessageTemplate.build(digest, config, DAY, NOW)
    reader = Recipient(
        subscriber_id=7,
        email=address,
        unsubscribe_url="https://ree-news.example.com/newsletter/u/PUBLICID.sig",
        unsubscribe_mailto="mailto:unsubscribe@ree-news.example.com?subject=unsubscribe%20T.s",
    )
    raw = template.render(reader).data
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return raw, message, digest.subject


@PROPERTY
@given(ADDRESSES, TITLES)
@example("reader@example.org", "x" * 100_000)
@example("reader@example.org", "Prices up\r\nBcc: victim@example.org\r\n\r\nbody")
@example("reader@example.org", "{{ x }} {% if 1 %}yes{% endif %} {# c #} ${x} %(x)s")
@example("ann@bücher.example", "Zürich – €450/kg =?utf-8?q?=41?=")
@example("reader@example.org", "=?utf-8?q?a=0D=0ABcc:_victim@example.org=0D=0A=0D=0Abody?=")
def test_any_reader_and_title_give_a_clean_message(raw_address: str, title: str) -> None:
    address = accepted(raw_address)
    raw, message, subject = message_for(title, address)
    assert raw.isascii()
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert not message.defects
    assert all(not part.defects for part in message.walk())
    names = [name.lower() for name in message]
    assert sorted(names) == sorted(HEADERS)  # nothing injected, nothing lost
    assert str(message["To"]) == address
    # Python may fold right after "Subject:" (cosmetic: readers trim the leading space).
    assert str(message["Subject"]).lstrip(" ") == subject
    assert "\r" not in subject and "\n" not in subject
    plain, html = (part.get_content() for part in message.iter_parts())
    assert address in plain and address in html.replace("&#x27;", "'").replace("&amp;", "&")
    assert "{{" not in title or "{{" in plain  # a title is text, never a template


def test_a_template_looking_title_is_shown_literally() -> None:
    _, message, subject = message_for("{{ x }} costs {% raw %}", "reader@example.org")
    assert subject.endswith(": {{ x }} costs {% raw %}")
    plain = next(message.iter_parts()).get_content()
    assert "{{ x }} costs {% raw %}" in plain


def test_the_wire_address_keeps_its_local_part_and_names_why_it_was_refused() -> None:
    """The reason lands in the reader's delivery record: it must say what to do about it."""
    assert envelope_address('"a@b"@bücher.example') == '"a@b"@xn--bcher-kva.example'
    with pytest.raises(AddressError) as refused:
        envelope_address("josé@example.org")
    assert refused.value.address == "josé@example.org"
    assert refused.value.reason == "the local part is not ASCII; it needs a relay with SMTPUTF8"
    with pytest.raises(AddressError) as invalid:
        envelope_address("a@bü-.example")
    assert invalid.value.address == "a@bü-.example"
    assert invalid.value.reason.startswith("the domain is not a valid IDNA name: ")
