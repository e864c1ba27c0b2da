"""The subscription rules without HTTP: the confirmation mail, sign-up outcomes, erasure.

The mail goes through the real `SmtpTransport` into aiosmtpd and is checked on its bytes
(RFC 5322, GDPR Art. 7(1), no advertising in the confirmation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import dkim
import pytest

from newsletter.config import DkimConfig, Settings, load_settings
from newsletter.errors import AddressError, SuppressedAddressError
from newsletter.mail import dkim_signer
from newsletter.mail.dkim import RSA, generate_key
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import SubscriberStatus
from newsletter.store import SqlStore, open_store
from newsletter.subscriptions import (
    ConfirmResult,
    SignupRequest,
    SignupResult,
    Subscriptions,
    Visitor,
)
from newsletter.tokens import SubscriberRef
from tests.support.clock import T0, FakeClock
from tests.support.config import sample_config
from tests.support.smtp_server import SmtpServer
from tests.support.web import text_part

KEY = "subscriptions-test-key"
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING


class Signups:
    def __init__(self, tmp_path: Path, smtp: SmtpServer, keys: tuple[str, ...] = (KEY,)) -> None:
        env = {"NEWSLETTER_SECRET_KEY": keys[-1], "NEWSLETTER_OLD_SECRET_KEYS": ",".join(keys[:-1])}
        self.settings: Settings = load_settings(sample_config(tmp_path, smtp.port), env)
        self.store: SqlStore = open_store(self.settings.database_url)
        self.clock = FakeClock()
        self.smtp = smtp
        self.service = Subscriptions(
            self.settings, self.store, SmtpTransport(self.settings.smtp), self.clock
        )

    def sign_up(self, address: str) -> SignupResult:
        signup = self.service.sign_up(SignupRequest(address, "test", Visitor("192.0.2.1", "UA")))
        if signup.mail is not None:
            asyncio.run(self.service.send(signup.mail))
        return signup.outcome


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Signups]:
    with SmtpServer() as smtp:
        made = Signups(tmp_path, smtp)
        try:
            yield made
        finally:
            made.store.close()


def test_the_confirmation_mail_is_well_formed_and_carries_no_advertising(world: Signups) -> None:
    world.clock.now = datetime.now(UTC)
    assert world.sign_up("Ann@Example.org") is SignupResult.SENT
    [received] = world.smtp.messages
    raw = received.data
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    for header in ("Date", "From", "To", "Subject", "Message-ID", "MIME-Version"):
        assert len(msg.get_all(header) or []) == 1, header
    sent = parsedate_to_datetime(msg["Date"])
    assert sent.tzinfo and abs(sent - world.clock.now) < timedelta(minutes=5)
    assert re.fullmatch(r"<[^<>@\s]+@ree-news\.example\.com>", msg["Message-ID"])
    assert msg["From"] == "REE Daily <daily@ree-news.example.com>"
    assert msg["To"] == "ann@example.org" and "Re:" not in msg["Subject"]
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    lines = raw.split(b"\r\n")
    # RFC 2045 6.7: encoded lines at most 76; headers are folded to the same width
    assert max(map(len, lines)) <= 76 and b"\n" not in raw.replace(b"\r\n", b"")
    text = text_part(msg)
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    link = re.search(r"https://ree-news\.example\.com/newsletter/confirm/[\w.-]+", text)
    assert link
    base = world.settings.base_url
    assert re.findall(r'href="([^"]+)"', html) == [link.group(0), link.group(0), base]
    for body in (text, html):
        assert "7 days" in body and world.settings.postal_address in body
        assert "unsubscribe" not in body.lower() and "Read more" not in body


def test_sign_up_outcomes(world: Signups) -> None:
    assert world.sign_up("ann@example.org") is SignupResult.SENT
    assert world.sign_up("ann@example.org") is SignupResult.TOO_SOON
    world.store.add_subscriber("bob@example.org", status=ACTIVE, source="t", now=T0)
    assert world.sign_up("bob@example.org") is SignupResult.ALREADY_ACTIVE
    with pytest.raises(AddressError):
        world.sign_up("not an address")
    for _ in range(2):
        world.clock.advance(minutes=11)
        assert world.sign_up("ann@example.org") is SignupResult.SENT
    world.clock.advance(minutes=11)
    assert world.sign_up("ann@example.org") is SignupResult.DAILY_LIMIT
    assert [m.rcpt_tos for m in world.smtp.messages] == [("ann@example.org",)] * 3


def test_confirm_through_the_service(world: Signups) -> None:
    world.sign_up("ann@example.org")
    body = email.message_from_bytes(world.smtp.messages[0].data, policy=policy.default)
    assert isinstance(body, EmailMessage)
    token = re.findall(r"/confirm/([\w.-]+)", text_part(body))[0]
    link = world.service.read_confirm_link(token)
    assert link.subscriber is not None and not link.expired
    assert link.issued_at == T0
    assert world.service.confirm(link, Visitor("192.0.2.9", "B")) is ConfirmResult.CONFIRMED
    assert world.service.confirm(link, Visitor()) is ConfirmResult.ALREADY_ACTIVE
    world.clock.advance(days=8)
    expired = world.service.read_confirm_link(token)
    assert expired.expired and expired.subscriber == link.subscriber
    with pytest.raises(ValueError, match="unexpired"):
        world.service.confirm(expired, Visitor())
    assert world.service.read_confirm_link(token[:-3] + "abc").subscriber is None


def test_an_erased_address_stays_refused_by_imports_but_may_sign_up_again(
    world: Signups,
) -> None:
    world.sign_up("gone@example.org")
    erased = world.service.erase("Gone@Example.org")
    assert erased["subscriber"] == 1 and erased["consents"] == 1
    exported = world.service.export("gone@example.org")
    assert exported["subscriber"] is None and exported["on_erased_list"] is True
    for status in (ACTIVE, PENDING):
        with pytest.raises(SuppressedAddressError, match="erased"):
            world.service.add_without_confirmation("gone@example.org", status, "import")
    world.clock.advance(hours=1)
    assert world.sign_up("gone@example.org") is SignupResult.SENT  # fresh double opt-in
    again = world.store.get_subscriber("gone@example.org")
    assert again is not None and again.status is PENDING
    assert world.service.export("gone@example.org")["on_erased_list"] is True


def test_the_erased_list_survives_a_key_rotation(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        before = Signups(tmp_path, smtp, keys=("key-a",))
        before.service.erase("gone@example.org")
        before.store.close()
        rotated = Signups(tmp_path, smtp, keys=("key-a", "key-b"))
        try:
            with pytest.raises(SuppressedAddressError):
                rotated.service.add_without_confirmation("gone@example.org", ACTIVE, "import")
        finally:
            rotated.store.close()
        dropped = Signups(tmp_path, smtp, keys=("key-b",))  # documented: keep old keys listed
        try:
            dropped.service.add_without_confirmation("gone@example.org", ACTIVE, "import")
        finally:
            dropped.store.close()


def test_unsubscribe_stops_mail_and_keeps_a_bounce_a_bounce(world: Signups) -> None:
    ann = world.store.add_subscriber("ann@example.org", status=ACTIVE, source="t", now=T0)
    bob = world.store.add_subscriber("bob@example.org", status=ACTIVE, source="t", now=T0)
    world.store.record_hard_bounce(bob.id, 1, T0)
    assert world.service.unsubscribe(SubscriberRef(public_id=ann.public_id)) is not None
    assert world.service.unsubscribe(SubscriberRef(legacy_id=bob.id)) is not None  # old links
    assert world.service.unsubscribe(SubscriberRef(public_id="A" * 22)) is None
    assert world.service.unsubscribe(SubscriberRef(legacy_id=424242)) is None
    statuses = {s.email: s.status for s in world.store.iter_subscribers()}
    assert statuses == {
        "ann@example.org": SubscriberStatus.UNSUBSCRIBED,
        "bob@example.org": SubscriberStatus.BOUNCED,
    }


def test_the_confirmation_mail_is_dkim_signed_like_the_digest(tmp_path: Path) -> None:
    key = generate_key("ree2026", RSA, tmp_path / "keys" / "ree2026.pem")
    with SmtpServer() as smtp:
        world = Signups(tmp_path, smtp)
        world.store.close()
        pem = tmp_path / "keys" / "ree2026.pem"
        dkim_config = DkimConfig("ree-news.example.com", "ree2026", pem, "", None)
        world.settings = dataclasses.replace(world.settings, dkim=dkim_config)
        world.store = open_store(world.settings.database_url)
        transport = SmtpTransport(world.settings.smtp)
        sign = dkim_signer(dkim_config, world.clock)
        world.service = Subscriptions(world.settings, world.store, transport, world.clock, sign)
        try:
            assert world.sign_up("ann@example.org") is SignupResult.SENT
        finally:
            world.store.close()
    raw = smtp.messages[0].data
    assert raw.startswith(b"DKIM-Signature:")
    record = key.txt_record().encode()
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)
