"""The confirmation mail: the digest's fluid layout, a preheader, and quoted-printable lines of
at most 76 characters (RFC 2045 6.7), checked on every line of the encoded message."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from lxml import html as lxml_html

from newsletter import confirm_mail
from newsletter.config import Settings, load_settings
from newsletter.confirm_mail import LINE_MAX, ConfirmationMailer

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LINK = "https://ree-news.example.com/newsletter/confirm/" + "eyJzIjoxMjM0NX0." * 6 + "sig-_x"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config.toml", environ={})


@pytest.fixture(scope="module")
def mailer(settings: Settings) -> ConfirmationMailer:
    return ConfirmationMailer(settings)


def parsed(raw: bytes) -> tuple[EmailMessage, str, str]:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    plain, html = (part.get_content() for part in message.iter_parts())
    return message, str(plain), str(html)


def assert_lines_fit(raw: bytes, *, unfoldable: bytes = b"") -> None:
    """Every line at most 76, but a header holding one address longer than that: an address
    cannot be folded (RFC 5322 2.1.1 allows up to 998 there)."""
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    for line in raw.split(b"\r\n"):
        if unfoldable and unfoldable in line and line.startswith(b"To: "):
            assert len(line) <= 998
            continue
        assert len(line) <= LINE_MAX, line


def test_every_line_of_the_encoded_message_is_at_most_76(mailer: ConfirmationMailer) -> None:
    long_address = "a.very.long.local.part.of.an.address.for.testing" + "@" + "sub." * 12 + "org"
    raw = mailer.build(long_address, LINK, NOW).data
    assert_lines_fit(raw, unfoldable=long_address.encode())
    message, plain, html = parsed(raw)
    assert long_address in plain and long_address in html
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # the longest source lines needed soft breaks; none were left at 77 or 78
    assert max(len(line) for line in html.splitlines()) > 300


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    local=st.from_regex(r"[a-z0-9._+'&-]{1,64}", fullmatch=True),
    token=st.from_regex(r"[A-Za-z0-9._-]{1,300}", fullmatch=True),
)
def test_lines_fit_whatever_the_address_and_token(
    mailer: ConfirmationMailer, local: str, token: str
) -> None:
    link = f"https://ree-news.example.com/newsletter/confirm/{token}"
    address = f"{local.strip('.') or 'x'}@example.org".replace("..", ".")
    try:
        raw = mailer.build(address, link, NOW).data
    except ValueError:
        return  # an address the email package refuses never reaches the mailer (validated)
    assert_lines_fit(raw)
    _, plain, html = parsed(raw)
    assert link in plain and html.count(f'href="{link}"') == 2


def test_it_has_a_preheader_that_is_not_the_subject(mailer: ConfirmationMailer) -> None:
    message, _, html = parsed(mailer.build("ann@example.org", LINK, NOW).data)
    doc = lxml_html.document_fromstring(html)
    body = doc.find("body")
    assert body is not None
    first = body.xpath(".//text()[normalize-space()]")[0].strip(" \u00a0\u200c")
    assert first == "One click starts your REE Daily subscription. The link works for 7 days."
    assert first != message["Subject"] and "confirm" not in first.lower()
    hidden = body.xpath(".//*[contains(@style, 'display:none')]")
    assert [el.get("class") for el in hidden] == ["preheader"]


def test_it_wears_the_digests_fluid_layout_and_dark_mode(mailer: ConfirmationMailer) -> None:
    _, _, html = parsed(mailer.build("ann@example.org", LINK, NOW).data)
    doc = lxml_html.document_fromstring(html)
    container = doc.xpath("//div[@class='container']")[0]
    assert "max-width:600px" in container.get("style").replace(" ", "")
    fluid = re.sub(r"<!--\[if mso\]>.*?<!\[endif\]-->", "", html, flags=re.DOTALL)
    assert 'width="600"' not in fluid and not re.search(r"(?<!max-)width:\s*600px", fluid)
    [style] = [s.text_content() for s in doc.iter("style")]
    assert "prefers-color-scheme: dark" in style and "[data-ogsb]" in style
    assert doc.xpath("//h1/text()") == ["Please confirm your subscription"]
    assert "word-break:break-all" in doc.xpath("//a[@class='confirm-link']")[0].get("style")


def test_the_address_is_escaped_and_slot_like_text_stays_text(mailer: ConfirmationMailer) -> None:
    raw = mailer.build("o'reilly&co@example.org", LINK, NOW).data
    _, plain, html = parsed(raw)
    assert "o&#x27;reilly&amp;co@example.org" in html
    assert "o'reilly&co@example.org" in plain
    sneaky = "__CONFIRM_URL_0123456789abcdef__@example.org"
    _, plain, html = parsed(mailer.build(sneaky, LINK, NOW).data)
    assert sneaky in html and html.count(f'href="{LINK}"') == 2  # a guessed slot stays text


def test_the_html_is_inlined_once_not_per_mail(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = ConfirmationMailer(settings)

    def refuse(html: str, css: str) -> str:
        raise AssertionError("a sign-up must not inline CSS")

    monkeypatch.setattr(confirm_mail, "inline_css", refuse)
    first = made.build("ann@example.org", LINK, NOW).data
    second = made.build("bob@example.org", LINK + "2", NOW).data
    assert b"ann@example.org" in first and b"bob@example.org" in second
    with pytest.raises(AssertionError, match="inline"):
        ConfirmationMailer(settings)
