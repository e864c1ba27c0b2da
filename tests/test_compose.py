"""The bytes of one message, checked against the message-format and list-header rules."""

from __future__ import annotations

import email
import quopri
import re
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from newsletter.compose import MessageTemplate, qp_encode_line
from newsletter.config import Settings, load_settings
from newsletter.models import EMAIL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, Digest, Recipient

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config.toml", environ={})


def make_digest(subject: str = "REE Daily, 28 Nov 2026: Dysprosium – up 5 % in Zürich") -> Digest:
    long_line = "<p>" + "Neodymium–praseodymium oxide " * 20 + "</p>"
    html = (
        "<html><body>\n<p>Préface =equals= and trailing space </p>\n"
        f"{long_line}\n.a line that starts with a dot\n"
        f'<a href="{UNSUBSCRIBE_URL_PLACEHOLDER}">Unsubscribe</a> {EMAIL_PLACEHOLDER}\n'
        "</body></html>"
    )
    text = (
        "REE Daily\n\nLynas ships first heavy rare earths \u2013 Malaysia\n"
        f"Unsubscribe: {UNSUBSCRIBE_URL_PLACEHOLDER}\nSent to {EMAIL_PLACEHOLDER}\n"
    )
    return Digest(subject=subject, preheader="p", html=html, text=text, article_ids=("a",))


def recipient(subscriber_id: int = 42, address: str = "reader@example.org") -> Recipient:
    return Recipient(
        subscriber_id=subscriber_id,
        email=address,
        unsubscribe_url=f"https://ree-news.example.com/newsletter/u/TOKEN{subscriber_id}.sig",
        unsubscribe_mailto=f"mailto:unsubscribe@ree-news.example.com?subject=unsubscribe%20T{subscriber_id}",
    )


def build(settings: Settings, digest: Digest | None = None) -> MessageTemplate:
    return MessageTemplate.build(digest or make_digest(), settings, date(2026, 11, 28), NOW)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_follow_rfc5322_and_list_rules(settings: Settings) -> None:
    raw = build(settings).render(recipient()).data
    msg = parse(raw)
    for name in ("Date", "From", "To", "Subject", "Message-ID", "List-Unsubscribe", "List-Id"):
        assert len(msg.get_all(name) or []) == 1, name
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert re.fullmatch(r"<[^<>@\s]+@ree-news\.example\.com>", msg["Message-ID"])
    assert msg["From"].addresses[0].display_name == "REE Daily"
    assert msg["From"].addresses[0].addr_spec == "daily@ree-news.example.com"
    assert msg["To"] == "reader@example.org"
    assert str(msg["Subject"]) == "REE Daily, 28 Nov 2026: Dysprosium – up 5 % in Zürich"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.search(r"<daily\.ree-news\.example\.com>$", msg["List-Id"])
    assert msg["MIME-Version"] == "1.0"
    assert "Return-Path" not in msg


def test_list_unsubscribe_is_https_plus_mailto_and_never_encoded(settings: Settings) -> None:
    raw = build(settings).render(recipient()).data
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()
    unfolded = re.search(rb"List-Unsubscribe: (.*?)\r\n(?! )", header_block, re.S)
    assert unfolded is not None
    value = unfolded.group(1).replace(b"\r\n ", b" ").decode()
    assert b"=?" not in unfolded.group(0)
    assert re.fullmatch(r"\s*<[^>]+>(\s*,\s*<[^>]+>)*\s*", value)
    uris = re.findall(r"<([^>]+)>", value)
    assert [u.split(":")[0] for u in uris] == ["https", "mailto"]
    assert "@" not in uris[0]
    assert uris[0] == recipient().unsubscribe_url


def test_multipart_alternative_with_text_first_and_7bit_safe_lines(settings: Settings) -> None:
    raw = build(settings).render(recipient()).data
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_parts_decode_to_the_rendered_digest_with_personal_values(settings: Settings) -> None:
    digest = make_digest()
    reader = recipient(7, "o'brien&co@example.org")
    msg = parse(build(settings, digest).render(reader).data)
    plain, html = (p.get_content().replace("\r\n", "\n") for p in msg.iter_parts())
    expected_text = digest.text.replace(UNSUBSCRIBE_URL_PLACEHOLDER, reader.unsubscribe_url)
    assert plain == expected_text.replace(EMAIL_PLACEHOLDER, reader.email)
    assert f'href="{reader.unsubscribe_url}"' in html
    assert "o&#x27;brien&amp;co@example.org" in html
    assert EMAIL_PLACEHOLDER not in html and UNSUBSCRIBE_URL_PLACEHOLDER not in plain
    assert "Préface =equals= and trailing space </p>" in html


def test_each_recipient_gets_own_message_id_and_link(settings: Settings) -> None:
    template = build(settings)
    messages = [parse(template.render(recipient(i, f"r{i}@example.org")).data) for i in range(50)]
    assert len({m["Message-ID"] for m in messages}) == 50
    assert len({m["List-Unsubscribe"] for m in messages}) == 50
    assert {m["Subject"] for m in messages} == {messages[0]["Subject"]}


@pytest.mark.parametrize(
    "bad", ["evil@example.org\r\nBcc: victim@example.org", "a@b.org\nX: y", "ü@example.org"]
)
def test_recipient_values_cannot_inject_headers(settings: Settings, bad: str) -> None:
    with pytest.raises(ValueError):
        build(settings).render(recipient(1, bad))


def test_subject_from_feed_data_cannot_inject_headers(settings: Settings) -> None:
    with pytest.raises(ValueError):
        build(settings, make_digest("Prices up\r\nBcc: victim@example.org"))


def test_qp_line_encoding_round_trips_and_soft_breaks_with_crlf() -> None:
    line = "Dysprosium – €450/kg =" + "x" * 120 + " "
    encoded = qp_encode_line(line)
    assert encoded.endswith(b"\r\n")
    assert all(len(chunk) <= 76 for chunk in encoded.split(b"\r\n"))
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode() == line + "\n"


def test_feedback_id_is_one_static_header_when_configured(settings: Settings) -> None:
    from dataclasses import replace

    plain = parse(build(settings).render(recipient()).data)
    assert "Feedback-ID" not in plain
    with_fbl = replace(settings, feedback_id="daily:reenews:ReeDaily01")
    messages = [
        parse(build(with_fbl).render(recipient(i, f"r{i}@example.org")).data) for i in range(3)
    ]
    assert {m["Feedback-ID"] for m in messages} == {"daily:reenews:ReeDaily01"}
    assert all(len(m.get_all("Feedback-ID") or []) == 1 for m in messages)
