"""The header set of a digest message, read back from its bytes with the `email` package.

Mailbox providers and auto-responders act on these headers: `Precedence: bulk` and
`Auto-Submitted` keep vacation replies and loops away (RFC 3834), `List-Archive`, `List-Id` and
the two `List-Unsubscribe` headers (RFC 2369, 2919, 8058) are what a one-click unsubscribe
button and list filters read, `Reply-To` is where answers go. Each must be there exactly once
with exactly this value; a header that vanishes or changes changes what readers get.
"""

from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from newsletter.compose import MessageTemplate, personalize, qp_encode_line
from newsletter.config import Settings, load_settings
from newsletter.models import (
    EMAIL_PLACEHOLDER,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Digest,
    Recipient,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
DAY = date(2026, 11, 28)
UNSUBSCRIBE = "https://ree-news.example.com/newsletter/u/PUBLICID.sig"
MAILTO = "mailto:unsubscribe@ree-news.example.com?subject=unsubscribe%20PUBLICID.sig"
PREFERENCES = "https://ree-news.example.com/newsletter/preferences/PUBLICID.sig"


@pytest.fixture(scope="module")
def settings() -> Settings:
    shipped = load_settings(ROOT / "config.toml", environ={})
    return replace(shipped, reply_to="editors@ree-news.example.com")


def digest() -> Digest:
    text = (
        f"Hello {EMAIL_PLACEHOLDER}\nUnsubscribe: {UNSUBSCRIBE_URL_PLACEHOLDER}\n"
        f"Preferences: {PREFERENCES_URL_PLACEHOLDER}\n"
    )
    html = (
        f'<p>Hello {EMAIL_PLACEHOLDER}</p>\n<a href="{UNSUBSCRIBE_URL_PLACEHOLDER}">u</a>\n'
        f'<a href="{PREFERENCES_URL_PLACEHOLDER}">p</a>\n'
    )
    return Digest(
        subject="REE Daily: Zürich", preheader="", html=html, text=text, article_ids=("a",)
    )


def reader(**changes: Any) -> Recipient:
    base = Recipient(
        subscriber_id=42,
        email="reader@example.org",
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mailto=MAILTO,
        preferences_url=PREFERENCES,
    )
    return replace(base, **changes)


def render(settings: Settings, recipient: Recipient | None = None) -> tuple[bytes, EmailMessage]:
    template = MessageTemplate.build(digest(), settings, date(2026, 11, 28), NOW)
    raw = template.render(recipient or reader()).data
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return raw, message


def test_a_digest_carries_exactly_this_header_set(settings: Settings) -> None:
    _, message = render(settings)
    assert sorted(message.keys()) == sorted(
        [
            "To",
            "Message-ID",
            "List-Unsubscribe",
            "Date",
            "From",
            "Reply-To",
            "Subject",
            "List-Id",
            "List-Unsubscribe-Post",
            "List-Archive",
            "Precedence",
            "Auto-Submitted",
            "MIME-Version",
            "Content-Type",
        ]
    )
    expected = {
        "To": "reader@example.org",
        "Date": "Sat, 28 Nov 2026 07:00:00 +0000",
        "From": "REE Daily <daily@ree-news.example.com>",
        "Reply-To": "editors@ree-news.example.com",
        "Subject": "REE Daily: Zürich",
        "List-Id": "REE Daily <daily.ree-news.example.com>",
        "List-Unsubscribe": f"<{UNSUBSCRIBE}>, <{MAILTO}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Archive": "<https://ree-news.example.com/newsletter/archive>",
        "Precedence": "bulk",
        "Auto-Submitted": "auto-generated",
        "MIME-Version": "1.0",
    }
    assert {name: str(message[name]) for name in expected} == expected
    assert message.get_content_type() == "multipart/alternative"


def test_the_message_id_names_the_issue_date_on_the_sender_domain_and_not_the_reader(
    settings: Settings,
) -> None:
    """Reader 42's Message-ID holds the date, the issue's nonce and 80 random bits: no database
    id, which would tell every reader how large the list is and how fast it grows."""
    _, message = render(settings)
    assert re.fullmatch(
        r"<20261128\.[0-9a-f]{8}\.[0-9a-f]{20}@ree-news\.example\.com>", message["Message-ID"]
    )
    assert ".42." not in message["Message-ID"]


def test_reply_to_is_left_out_when_none_is_configured(settings: Settings) -> None:
    raw, message = render(replace(settings, reply_to=None))
    assert "Reply-To" not in message
    assert b"Reply-To" not in raw


def test_without_a_mailto_list_unsubscribe_is_the_https_link_alone(settings: Settings) -> None:
    raw, message = render(settings, reader(unsubscribe_mailto=None))
    assert str(message["List-Unsubscribe"]) == f"<{UNSUBSCRIBE}>"
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in raw


def test_the_personal_values_are_spliced_into_both_parts(settings: Settings) -> None:
    _, message = render(settings)
    plain, html = (part.get_content() for part in message.iter_parts())
    assert plain.splitlines() == [
        "Hello reader@example.org",
        f"Unsubscribe: {UNSUBSCRIBE}",
        f"Preferences: {PREFERENCES}",
    ]
    assert html.splitlines() == [
        "<p>Hello reader@example.org</p>",
        f'<a href="{UNSUBSCRIBE}">u</a>',
        f'<a href="{PREFERENCES}">p</a>',
    ]


def test_a_copy_without_a_preferences_page_links_the_unsubscribe_page(settings: Settings) -> None:
    _, message = render(settings, reader(preferences_url=""))
    plain, html = (part.get_content() for part in message.iter_parts())
    assert f"Preferences: {UNSUBSCRIBE}" in plain.splitlines()
    assert f'<a href="{UNSUBSCRIBE}">p</a>' in html.splitlines()


def test_only_the_html_part_escapes_the_address(settings: Settings) -> None:
    _, message = render(settings, reader(email="o'brien&co@example.org"))
    plain, html = (part.get_content() for part in message.iter_parts())
    assert "Hello o'brien&co@example.org" in plain.splitlines()
    assert "<p>Hello o&#x27;brien&amp;co@example.org</p>" in html.splitlines()
    assert str(message["To"]) == "o'brien&co@example.org"


@pytest.mark.parametrize(
    "subject",
    [
        "Prices =?utf-8?q?a=0D=0ABcc:_victim@example.org?= up",
        "=?utf-8?q?x=0D=0A=0D=0A<script>?=",
        "Zürich =?utf-8?b?QQ==?= " + "long words " * 12,
        "X-Ray =?X?=",  # capital X: a character the line-break check must not trip on
    ],
)
def test_a_subject_spelling_an_encoded_word_is_shown_literally_and_adds_no_header(
    settings: Settings, subject: str
) -> None:
    """Feed titles are anyone's text: one that spells an RFC 2047 encoded word stays that text."""
    template = MessageTemplate.build(
        replace(digest(), subject=subject), settings, date(2026, 11, 28), NOW
    )
    raw = template.render(reader()).data
    message = email.message_from_bytes(raw, policy=policy.default)
    assert str(message["Subject"]) == subject
    assert "Bcc" not in message and len(message.get_all("Subject") or []) == 1
    assert message.get_content_type() == "multipart/alternative"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78


def test_a_subject_spelling_an_encoded_word_still_cannot_break_the_line(
    settings: Settings,
) -> None:
    with pytest.raises(ValueError, match="a subject must be one line"):
        MessageTemplate.build(
            replace(digest(), subject="=?utf-8?q?a?=\r\nBcc: victim@example.org"),
            settings,
            date(2026, 11, 28),
            NOW,
        )


WIRE = (
    "To: reader@example.org\r\n"
    "Message-ID: <20261128.ID.ID@ree-news.example.com>\r\n"
    "List-Unsubscribe: <https://ree-news.example.com/newsletter/u/PUBLICID.sig>,\r\n"
    " <mailto:unsubscribe@ree-news.example.com?subject=unsubscribe%20PUBLICID.sig>\r\n"
    "Date: Sat, 28 Nov 2026 07:00:00 +0000\r\n"
    "From: REE Daily <daily@ree-news.example.com>\r\n"
    "Reply-To: editors@ree-news.example.com\r\n"
    "Subject: REE Daily: =?utf-8?q?Z=C3=BCrich?=\r\n"
    "List-Id: REE Daily <daily.ree-news.example.com>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "List-Archive: <https://ree-news.example.com/newsletter/archive>\r\n"
    "Precedence: bulk\r\n"
    "Auto-Submitted: auto-generated\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative;\r\n"
    ' boundary="BOUNDARY"\r\n'
    "\r\n"
    "--BOUNDARY\r\n"
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Hello reader@example.org\r\n"
    "Unsubscribe: https://ree-news.example.com/newsletter/u/PUBLICID.sig\r\n"
    "Preferences: https://ree-news.example.com/newsletter/preferences/PUBLICID.s=\r\n"
    "ig\r\n"
    "\r\n"
    "--BOUNDARY\r\n"
    'Content-Type: text/html; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<p>Hello reader@example.org</p>\r\n"
    '<a href=3D"https://ree-news.example.com/newsletter/u/PUBLICID.sig">u</a>\r\n'
    '<a href=3D"https://ree-news.example.com/newsletter/preferences/PUBLICID.sig=\r\n'
    '">p</a>\r\n'
    "\r\n"
    "--BOUNDARY--\r\n"
)


def test_the_message_bytes_are_laid_out_exactly_so(settings: Settings) -> None:
    """Header names as the RFCs spell them, in this order, both parts, CRLF throughout.

    Only the random parts (the Message-ID's two nonces, the MIME boundary) are written as
    placeholders; everything else is the wire form, reviewed line by line.
    """
    raw, message = render(settings)
    boundary = message.get_boundary()
    assert boundary is not None and re.fullmatch(r"=+\d+==", boundary)
    wire = raw.decode("ascii").replace(boundary, "BOUNDARY")
    wire = re.sub(r"<20261128\.[0-9a-f]{8}\.[0-9a-f]{20}@", "<20261128.ID.ID@", wire)
    assert wire == WIRE


def test_quoted_printable_keeps_spaces_and_tabs_readable_and_soft_breaks_at_76() -> None:
    """Only what must be encoded is: '=' and non-ASCII; a space or tab inside a line stays."""
    assert qp_encode_line("a b\tc = é") == b"a b\tc =3D =C3=A9\r\n"
    assert qp_encode_line("trailing ") == b"trailing=20\r\n"
    assert qp_encode_line("") == b"\r\n"
    assert qp_encode_line("x" * 80) == b"x" * 75 + b"=\r\n" + b"x" * 5 + b"\r\n"


def test_a_long_encoded_word_subject_is_folded_at_known_points(settings: Settings) -> None:
    """Known answer: the first line leaves room for "Subject: ", every line stays within 78."""
    subject = "REE Daily, 28 Nov 2026: =?utf-8?q?Dysprosium?= prices rise again in Shanghai trading"
    template = MessageTemplate.build(replace(digest(), subject=subject), settings, DAY, NOW)
    header = re.search(rb"\r\nSubject: (.*?)\r\n(?! )", template.headers, re.S)
    assert header is not None
    assert header.group(1).split(b"\r\n") == [
        b"=?utf-8?q?REE_Daily=2C_28_Nov_2026=3A_=3D=3Futf-8=3Fq=3FDysprosium?=",  # 9 + 68
        b" =?utf-8?q?=3F=3D_prices_rise_again_in_Shanghai_trading?=",
    ]


def test_a_configured_name_spelling_the_subject_line_changes_nothing(settings: Settings) -> None:
    """The subject's own line is replaced, never text inside another header."""
    odd = replace(settings, name="Subject: @@SUBJECT@@", from_name="Subject: @@SUBJECT@@")
    template = MessageTemplate.build(replace(digest(), subject="=?a?="), odd, DAY, NOW)
    message = email.message_from_bytes(template.render(reader()).data, policy=policy.default)
    assert str(message["Subject"]) == "=?a?="
    assert str(message["List-Id"]) == "Subject: @@SUBJECT@@ <daily.ree-news.example.com>"


def test_the_feedback_id_header_is_written_as_google_spells_it(settings: Settings) -> None:
    raw, _ = render(replace(settings, feedback_id="daily:reenews:ReeDaily01"))
    assert b"\r\nFeedback-ID: daily:reenews:ReeDaily01\r\n" in raw.split(b"\r\n\r\n")[0]


def test_only_lines_with_a_personal_field_are_left_to_encode_per_reader(
    settings: Settings,
) -> None:
    """The speed of a send rests on this: every other line is encoded once per issue."""
    template = MessageTemplate.build(digest(), settings, DAY, NOW)
    text, html = template.body
    assert [type(segment) for segment in text] == [str, str, str]
    assert [type(segment) for segment in html] == [str, str, str]
    plain = Digest(
        subject="s", preheader="", html="<p>a</p>\n<p>b</p>", text="a\nb", article_ids=()
    )
    fixed = MessageTemplate.build(plain, settings, DAY, NOW)
    assert fixed.body == ((b"a\r\nb\r\n",), (b"<p>a</p>\r\n<p>b</p>\r\n",))


def test_a_refused_reader_value_is_reported_as_unsafe_for_a_header(settings: Settings) -> None:
    """The text goes into that reader's delivery record, where an operator reads it."""
    template = MessageTemplate.build(digest(), settings, DAY, NOW)
    with pytest.raises(ValueError, match=r"^unsafe value for a header: 'x@example.org\\nBcc: y'$"):
        template.render(reader(email="x@example.org\nBcc: y"))


def test_a_preview_escapes_the_address_in_html_only() -> None:
    guest = reader(email="o'brien&co@example.org")
    assert personalize(f"<p>{EMAIL_PLACEHOLDER}</p>", guest, escape=True) == (
        "<p>o&#x27;brien&amp;co@example.org</p>"
    )
    assert personalize(EMAIL_PLACEHOLDER, guest, escape=False) == "o'brien&co@example.org"
    assert personalize(PREFERENCES_URL_PLACEHOLDER, reader(preferences_url=""), escape=False) == (
        UNSUBSCRIBE
    )
