"""Which refusals suppress a reader, and the VERP sender every bounce is matched by.

Only "this mailbox does not exist" (RFC 3463 class 5, subject 1; or the bare reply codes 550,
551 and 553 with no enhanced status) counts as a hard bounce. A policy refusal (5.7.x), a full
mailbox (5.2.x) or a message-level refusal says nothing about the address, and suppressing a
working reader for it is the costlier mistake. The VERP address is a format we have mailed: the
bounce of an issue sent last year still names its reader, so it is pinned by a known answer.
"""

from __future__ import annotations

import hashlib
import hmac
import mailbox
import re
from email import message_from_bytes
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from newsletter.bounces import Verp, is_hard_bounce
from newsletter.cli.main import main
from newsletter.mail.inbound import parse_dsn
from newsletter.models import SubscriberStatus
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, deployment

KEY = "known-answer-key"
DOMAIN = "bounce.ree-news.example.com"
KNOWN = "bounce+4711-57976c5b23@bounce.ree-news.example.com"  # the older form, 4711 under KEY
SEALED = "bounce+8c59b261b89bab905fc893b70fda036a@bounce.ree-news.example.com"  # 4711 under KEY


def test_the_verp_address_is_sealed_as_documented() -> None:
    """One AES-128 block, keyed by SHA-256("verp-seal:" + key)[:16], holding the id as 8 bytes
    big-endian and the tag "ree-verp"; under the newest key. Pinned: a bounce of mail sent
    today must still name its reader after an upgrade."""
    seal = hashlib.sha256(b"verp-seal:" + KEY.encode()).digest()[:16]
    block = (4711).to_bytes(8, "big") + b"ree-verp"
    sealed = Cipher(algorithms.AES(seal), modes.ECB()).encryptor().update(block).hex()
    assert f"bounce+{sealed}@{DOMAIN}" == SEALED
    assert Verp([KEY], DOMAIN).address(4711) == SEALED
    oldest_first = ["the-first-key", "an-older-key", KEY]
    assert Verp(oldest_first, DOMAIN).address(4711) == SEALED  # sealed with the newest


def test_the_verp_address_tells_nothing_of_the_list() -> None:
    """Every reader sees the envelope sender (Return-Path): no id in clear, no order."""
    verp = Verp([KEY], DOMAIN)
    addresses = [verp.address(n) for n in (1, 2, 4711, 4712)]
    assert not any(re.search(r"\+(1|2|4711|4712)\b|-", a.split("@")[0]) for a in addresses)
    assert len({a[7:15] for a in addresses}) == 4  # neighbours share no prefix
    assert [verp.read(a) for a in addresses] == [1, 2, 4711, 4712]


def test_the_older_verp_form_is_spelled_as_in_mail_already_sent() -> None:
    """HMAC-SHA256 of "verp:<id>" under a key, its first 10 hex digits: still read."""
    mac = hmac.new(KEY.encode(), b"verp:4711", hashlib.sha256).hexdigest()[:10]
    assert f"bounce+4711-{mac}@{DOMAIN}" == KNOWN
    assert Verp([KEY], DOMAIN).read(KNOWN) == 4711


@pytest.mark.parametrize("known", [KNOWN, SEALED])
def test_a_known_verp_address_names_its_reader_after_rotation_and_through_relays(
    known: str,
) -> None:
    rotated = Verp([KEY, "a-newer-key"], "elsewhere.example")
    assert rotated.read(known) == 4711
    assert rotated.read(known.upper()) == 4711  # a relay that upper-cases the local part
    assert rotated.read(f"MAILER-DAEMON bounce to <{known}>") == 4711
    assert Verp(["a-newer-key"], DOMAIN).read(known) is None  # a key no longer held


@pytest.mark.parametrize(
    "forged",
    [
        SEALED.replace("8c59", "8c5a"),  # one digit changed: the tag no longer comes out
        SEALED.replace("036a@", "036@"),  # a digit short
        SEALED.replace("@", "0@"),  # a digit long
        Verp(["someone else's key"], DOMAIN).address(4711),
        KNOWN.replace("4711", "4712"),  # someone else's id under our MAC
        KNOWN.replace("57976c5b23", "57976c5b24"),
        KNOWN.replace("57976c5b23", "57976c5b2"),  # a MAC one digit short
        KNOWN.replace("bounce+", "bounce-"),
        KNOWN.replace("4711-", "4711+"),
        "bounce+-57976c5b23@bounce.ree-news.example.com",
        "bounce+4711-57976c5b23",  # no domain: not an address we wrote
        "daily@ree-news.example.com",
        "",
    ],
)
def test_a_verp_address_we_did_not_write_names_nobody(forged: str) -> None:
    assert Verp([KEY], DOMAIN).read(forged) is None


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown"),
        (550, "550 Requested action not taken: mailbox unavailable"),  # bare 550
        (551, "551 User not local; please try <x@elsewhere.example>"),  # bare 551
        (553, "553 Requested action not taken: mailbox name not allowed"),  # bare 553
        (553, "553 5.1.3 Bad recipient address syntax"),
        (550, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found"),  # Microsoft: 3 digits
        (554, "554 5.1.2 Host or domain name not found"),
        (421, "421 the relay says: 5.1.1 no such user"),  # the status decides, not the code
    ],
)
def test_a_dead_mailbox_is_a_hard_bounce(code: int, text: str) -> None:
    assert is_hard_bounce(code, text) is True


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "550 5.7.1 Message rejected as spam"),  # policy
        (550, "550 5.7.1 Service unavailable; client host blocked using Spamhaus"),
        (553, "553 5.7.1 Sender address rejected: not owned by user"),
        (551, "551 5.7.1 Relaying denied"),
        (554, "554 5.7.515 Access denied, sending domain does not meet requirements"),
        (550, "550 5.2.2 Mailbox full"),  # the mailbox exists
        (552, "552 Requested mail action aborted: exceeded storage allocation"),
        (554, "554 Transaction failed"),
        (450, "450 Requested mail action not taken: mailbox unavailable"),
        (452, "452 4.2.2 Mailbox full"),
        (0, "connection refused"),
        (552, "552 message failed: 15.1.1 is not a status"),
        (552, "552 see x5.1.1y"),
    ],
)
def test_a_refusal_that_does_not_say_the_mailbox_is_gone_is_not_a_hard_bounce(
    code: int, text: str
) -> None:
    assert is_hard_bounce(code, text) is False


def test_a_status_with_too_many_detail_digits_is_not_read_as_5_1() -> None:
    """RFC 3463 detail has at most three digits: 5.1.1000 is no dead-mailbox status."""
    assert is_hard_bounce(552, "552 5.1.1000 garbled") is False
    assert is_hard_bounce(551, "551 5.1.1000 garbled") is False  # a 5.x.y is present


def dsn(action: str, status: str, to: str, final: str = "gone@example.org") -> Message:
    """A delivery-status notification as an MTA writes it (RFC 3464), read back from bytes."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.org"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText("Your message could not be delivered.", "plain"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.org"
    per_recipient["Final-Recipient"] = f"rfc822; {final}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    part = MIMEBase("message", "delivery-status")
    part.set_payload([per_message, per_recipient])
    report.attach(part)
    return message_from_bytes(report.as_bytes())


@pytest.mark.parametrize(
    ("action", "status", "hard"),
    [
        ("failed", "5.1.1", True),
        ("Failed", "5.1.2", True),
        ("failed", "5.1.10", True),
        ("failed", "5.7.1", False),  # "failed" alone is not enough
        ("failed", "5.7.26", False),
        ("failed", "5.2.2", False),
        ("failed", "5.0.0", False),
        ("failed", "4.4.7", False),
        ("failed", "", False),
        ("delayed", "5.1.1", False),
        ("delivered", "2.0.0", False),
        ("relayed", "5.1.1", False),
    ],
)
def test_a_dsn_is_hard_only_when_it_failed_for_a_dead_mailbox(
    action: str, status: str, hard: bool
) -> None:
    (read,) = parse_dsn(dsn(action, status, "daily@ree-news.example.com"))
    assert read.hard is hard


READERS = {
    "gone@example.org": ("failed", "5.1.1"),
    "spam-flagged@example.org": ("failed", "5.7.1"),
    "policy@example.org": ("failed", "5.7.26"),
    "full@example.org": ("failed", "5.2.2"),
    "slow@example.org": ("delayed", "4.4.7"),
}


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def test_only_dead_mailbox_dsns_suppress_readers_found_by_verp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `bounces` command on real mbox mail: policy refusals leave working readers active."""
    verp_on = {'verp_domain = ""': f'verp_domain = "{DOMAIN}"'}
    with SmtpServer() as smtp, deployment(tmp_path, smtp, list(READERS), replace=verp_on) as world:
        verp = Verp([SECRET], DOMAIN)
        box = mailbox.mbox(tmp_path / "bounces.mbox")
        for address, (action, status) in READERS.items():
            box.add(dsn(action, status, verp.address(world.ids[address]), "rewritten@relay.test"))
        box.close()
        capsys.readouterr()
        assert main(["--config", str(world.config), "bounces", str(tmp_path / "bounces.mbox")]) == 0
        assert "bounced=1, counted=0, ignored=4, unknown=0" in capsys.readouterr().out
        statuses = {address: world.status_of(address) for address in READERS}
    assert statuses == {
        address: SubscriberStatus.BOUNCED
        if address == "gone@example.org"
        else SubscriberStatus.ACTIVE
        for address in READERS
    }


REFUSALS = {
    "reader00@example.org": ("551 User not local", SubscriberStatus.BOUNCED),
    "reader01@example.org": ("553 mailbox name not allowed", SubscriberStatus.BOUNCED),
    "reader02@example.org": ("550 5.7.1 Message rejected as spam", SubscriberStatus.ACTIVE),
    "reader03@example.org": ("554 5.7.515 Access denied", SubscriberStatus.ACTIVE),
    "reader04@example.org": ("552 5.2.2 Mailbox full", SubscriberStatus.ACTIVE),
    "reader05@example.org": (None, SubscriberStatus.ACTIVE),
}


def test_only_dead_mailbox_refusals_at_send_time_suppress_readers(tmp_path: Path) -> None:
    with SmtpServer() as smtp, deployment(tmp_path, smtp, list(REFUSALS)) as world:
        smtp.handler.behaviour = lambda at, rcpt: REFUSALS[rcpt][0] if at == "rcpt" else None
        world.send("--date", ISSUE_DATE)
        ledger = world.ledger()
        statuses = {address: world.status_of(address) for address in REFUSALS}
    assert statuses == {address: status for address, (_, status) in REFUSALS.items()}
    assert ledger == {a: "failed" if reply else "sent" for a, (reply, _) in REFUSALS.items()}
