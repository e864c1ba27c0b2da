"""RFC 6532 messages for readers with letters outside ASCII before the @-sign: the To field as
raw UTF-8 (only with `[smtp] smtputf8`), everything else as before, and no header injection by
any character that some reader of the message takes for a line break."""

from __future__ import annotations

import dataclasses
import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.compose import MessageTemplate, envelope_address, header_safe
from newsletter.config import Settings, load_settings
from newsletter.confirm_mail import ConfirmationMailer
from newsletter.errors import AddressError
from tests.test_compose import NOW, build, make_digest, recipient
from tests.test_confirm_mail import LINK

ROOT = Path(__file__).resolve().parent.parent
UTF8_READER = "用户@xn--fsqu00a.xn--4rr70v"  # 用户@例子.广告 as stored
# Every character str.splitlines breaks on, NUL, other controls, and a lone surrogate.
BREAKS = ["\r", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
          "\t", "\x7f", "\ud800"]  # fmt: skip


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config.toml", environ={})


@pytest.fixture(scope="module")
def utf8_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, smtputf8=True))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.SMTPUTF8)
    assert isinstance(message, EmailMessage)
    return message


def without_message_id(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Message-ID: ")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_an_ascii_reader_gets_the_same_bytes_whatever_the_setting(settings: Settings) -> None:
    template = build(settings)
    assert template.smtputf8 is False
    utf8 = dataclasses.replace(template, smtputf8=True)
    for address in ("reader@example.org", "o'brien&co@example.org"):
        before = template.render(recipient(address=address)).data
        after = utf8.render(recipient(address=address)).data
        assert without_message_id(after) == without_message_id(before)
        assert before.isascii()


def test_a_utf8_reader_is_written_only_when_the_relay_offers_smtputf8(
    settings: Settings, utf8_settings: Settings
) -> None:
    with pytest.raises(ValueError, match="unsafe value for a header"):
        build(settings).render(recipient(address=UTF8_READER))
    template = MessageTemplate.build(make_digest(), utf8_settings, NOW.date(), NOW)
    raw = template.render(recipient(address=UTF8_READER)).data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert raw.startswith(f"To: {UTF8_READER}\r\n".encode())  # raw UTF-8, no encoded word
    assert head.split(b"\r\n", 1)[1].isascii() and body.isascii()
    message = parse(raw)
    assert str(message["To"]) == UTF8_READER
    assert not message.defects
    plain, html = (part.get_content() for part in message.iter_parts())
    assert f"Sent to {UTF8_READER}" in plain and UTF8_READER in html
    assert "=E7=94=A8=E6=88=B7@xn--fsqu00a" in body.decode("ascii")  # QP of UTF-8


@pytest.mark.parametrize("brk", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_no_line_break_of_any_kind_gets_into_a_header(utf8_settings: Settings, brk: str) -> None:
    template = MessageTemplate.build(make_digest(), utf8_settings, NOW.date(), NOW)
    for address in (f"jos{brk}Bcc: x@example.org", f"用户{brk}bcc@example.org"):
        assert not header_safe(address)
        with pytest.raises(ValueError, match="unsafe value for a header"):
            template.render(recipient(address=address))
    link = dataclasses.replace(recipient(), unsubscribe_url=f"https://x.example/u/{brk}X: y")
    with pytest.raises(ValueError, match="unsafe value for a header"):
        template.render(link)
    with pytest.raises(ValueError, match="unsafe value for a header"):
        ConfirmationMailer(utf8_settings).build(f"用户{brk}bcc@example.org", LINK, NOW)


def test_the_wire_address_keeps_a_utf8_local_part_only_with_smtputf8() -> None:
    assert envelope_address("zoë@bücher.example", smtputf8=True) == "zoë@xn--bcher-kva.example"
    assert envelope_address(UTF8_READER, smtputf8=True) == UTF8_READER
    assert envelope_address("ann@example.org", smtputf8=True) == "ann@example.org"
    with pytest.raises(AddressError, match="SMTPUTF8"):
        envelope_address("zoë@bücher.example")
    with pytest.raises(AddressError, match="IDNA"):
        envelope_address("zoë@bü-.example", smtputf8=True)


def test_the_confirmation_mail_to_a_utf8_address(utf8_settings: Settings) -> None:
    raw = ConfirmationMailer(utf8_settings).build(UTF8_READER, LINK, NOW).data
    head, _, body = raw.partition(b"\r\n\r\n")
    to_line = f"To: {UTF8_READER}".encode()
    assert to_line in head.split(b"\r\n")
    assert head.replace(to_line, b"To: x").isascii() and body.isascii()
    message = parse(raw)
    assert str(message["To"]) == UTF8_READER and not message.defects
    assert [name.lower() for name in message].index("to") == 3  # Date, Message-ID, From, To
    plain, html = (part.get_content() for part in message.iter_parts())
    assert UTF8_READER in plain and UTF8_READER in html


def test_the_confirmation_mail_needs_the_setting_for_a_utf8_address(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unsafe value for a header"):
        ConfirmationMailer(settings).build(UTF8_READER, LINK, NOW)
