"""What comes back: VERP senders, bounce classification, DSNs read from mbox and Maildir."""

from __future__ import annotations

import base64
import mailbox
import quopri
import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from newsletter.bounces import Verp, is_hard_bounce
from newsletter.cli.main import main
from newsletter.mail.inbound import parse_dsn
from newsletter.models import SubscriberStatus
from tests.support.config import SAMPLE, make_config
from tests.support.feedserver import FeedServer
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment

VERP_DOMAIN = "bounce.ree-news.example.com"


def test_verp_round_trip_tamper_and_rotation() -> None:
    verp = Verp(["old", "new"], VERP_DOMAIN)
    address = verp.address(4711)
    assert re.fullmatch(r"bounce\+[0-9a-f]{32}@bounce\.ree-news\.example\.com", address)
    assert verp.read(address) == 4711
    assert verp.read(address.replace("bounce+", "bounce+0")) is None
    assert Verp(["old"], VERP_DOMAIN).read(Verp(["old"], VERP_DOMAIN).address(5)) == 5
    assert Verp(["new"], VERP_DOMAIN).read(Verp(["old"], VERP_DOMAIN).address(5)) is None
    assert verp.read("someone@example.org") is None


@pytest.mark.parametrize(
    ("code", "text", "hard"),
    [
        (550, "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown", True),
        (550, "550 No such user here", True),
        (553, "553 5.1.3 Bad recipient address syntax", True),
        (550, "550 5.7.1 Message rejected as spam", False),
        (554, "554 5.7.515 Access denied, sending domain does not meet requirements", False),
        (452, "452 4.2.2 Mailbox full", False),
    ],
)
def test_hard_bounce_is_a_dead_mailbox_not_a_policy_refusal(
    code: int, text: str, hard: bool
) -> None:
    assert is_hard_bounce(code, text) is hard


def dsn(final_recipient: str, action: str, status: str, to: str) -> Message:
    """A delivery-status notification as an MTA would write it (RFC 3464)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.org"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText("Your message could not be delivered.", "plain"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.org"
    per_recipient["Final-Recipient"] = f"rfc822; {final_recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    return report


def test_parse_dsn_reads_each_recipient_block() -> None:
    parsed = parse_dsn(_reparse(dsn("Gone@Example.org", "failed", "5.1.1", "bounce+3-x@b.test")))
    assert len(parsed) == 1
    only = parsed[0]
    assert (only.final_recipient, only.action, only.status) == (
        "Gone@Example.org",
        "failed",
        "5.1.1",
    )
    assert only.hard and only.verp_to == "bounce+3-x@b.test"
    assert (
        parse_dsn(_reparse(dsn("a@example.org", "delayed", "4.4.1", "x@y.test")))[0].hard is False
    )
    plain = EmailMessage()
    plain.set_content("not a report")
    assert parse_dsn(plain) == []


def global_dsn(blocks: list[str], to: str, encoding: str) -> bytes:
    """A report about mail sent with SMTPUTF8, as RFC 6533 has an MTA write it: UTF-8 fields in
    message/global-delivery-status, in any transfer encoding."""
    body = "\r\n\r\n".join(["Reporting-MTA: dns; mx.example.org", *blocks]).encode() + b"\r\n"
    encoded = {
        "8bit": body,
        "base64": base64.encodebytes(body),
        "quoted-printable": quopri.encodestring(body),
    }[encoding]
    head = (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=global-delivery-status; boundary=RR\r\n"
        "\r\n--RR\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--RR\r\nContent-Type: message/global-delivery-status\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode() + encoded + b"\r\n--RR--\r\n"


UTF8_BLOCKS = [
    "Original-Recipient: utf-8; jos\\x{E9}@example.org\r\n"
    "Final-Recipient: utf-8; josé@example.org\r\nAction: failed\r\nStatus: 5.1.1",
    "Final-Recipient: utf-8; 用户@例子.广告\r\nAction: failed\r\nStatus: 5.1.1",
    "Final-Recipient: utf-8; b\\x{F6}b@example.org\r\nAction: delayed\r\nStatus: 4.4.1",
]


@pytest.mark.parametrize("encoding", ["8bit", "base64", "quoted-printable"])
def test_parse_dsn_reads_a_utf8_report_in_any_transfer_encoding(encoding: str) -> None:
    """RFC 6533: the utf-8 address type, raw or with \\x{..} escapes, in a global report."""
    raw = global_dsn(UTF8_BLOCKS, "daily@ree-news.example.com", encoding)
    parsed = parse_dsn(message_from_bytes(raw, policy=policy.compat32))  # as read_mailbox reads
    assert [(r.final_recipient, r.action, r.status, r.hard) for r in parsed] == [
        ("josé@example.org", "failed", "5.1.1", True),
        ("用户@例子.广告", "failed", "5.1.1", True),
        ("böb@example.org", "delayed", "4.4.1", False),
    ]
    assert {r.verp_to for r in parsed} == {"daily@ree-news.example.com"}


def test_an_escape_that_names_no_character_is_not_decoded_into_one() -> None:
    """A surrogate or ASCII in \\x{..} (RFC 6533 allows neither) cannot forge an address."""
    blocks = [
        "Final-Recipient: utf-8; a\\x{D800}\\x{40}b@example.org\r\nAction: failed\r\nStatus: 5.1.1"
    ]
    raw = global_dsn(blocks, "x@y.test", "8bit")
    (only,) = parse_dsn(message_from_bytes(raw, policy=policy.compat32))
    assert only.final_recipient == "a\ufffd\ufffdb@example.org"


def _reparse(message: Message) -> Message:
    from email import message_from_bytes

    return message_from_bytes(message.as_bytes())


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    with FeedServer() as feeds, SmtpServer() as smtp:
        feeds.add_file("/feed/", SAMPLE)
        config = make_config(
            tmp_path,
            [("REE News", feeds.url("/feed/"))],
            smtp.port,
            replace={'verp_domain = ""': f'verp_domain = "{VERP_DOMAIN}"'},
        )
        world = Deployment.on(config, feeds, smtp)
        store = world.store
        for address in ("ann@example.org", "bob@example.org", "cy@example.org"):
            world.add(address)
        yield world
        store.close()


def test_send_uses_a_verp_sender_per_recipient(world: Deployment) -> None:
    assert world.send("--date", ISSUE_DATE) == 0
    verp = Verp([SECRET], VERP_DOMAIN)
    for received in world.smtp.messages:
        assert "Return-Path" not in received.data.decode()
        assert verp.read(received.mail_from) == world.ids[received.rcpt_tos[0]]


def run_bounces(
    world: Deployment,
    path: Path,
    notices: list[Message] | list[bytes],
    capsys: pytest.CaptureFixture[str],
) -> str:
    """`newsletter bounces` over an mbox (path "...mbox") or a Maildir holding `notices`."""
    box: mailbox.Mailbox[mailbox.Message]
    box = mailbox.mbox(path) if path.name == "mbox" else mailbox.Maildir(path)
    for notice in notices:
        box.add(notice)
    box.close()
    assert main(["--config", str(world.config), "bounces", str(path)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_bounces_command_marks_hard_bounces_found_by_verp_or_address(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    verp = Verp([SECRET], VERP_DOMAIN)
    notices = [
        dsn("ann@example.org", "failed", "5.1.1", "daily@ree-news.example.com"),
        dsn(
            "rewritten@relay.example", "failed", "5.1.1", verp.address(world.ids["bob@example.org"])
        ),
        dsn("cy@example.org", "delayed", "4.4.1", "daily@ree-news.example.com"),
        dsn("stranger@example.org", "failed", "5.1.1", "daily@ree-news.example.com"),
    ]
    out = run_bounces(world, tmp_path / kind, notices, capsys)
    assert "bounced=2, counted=0, ignored=1, unknown=1" in out
    assert world.status_of("ann@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("bob@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("cy@example.org") is SubscriberStatus.ACTIVE


def test_bounces_command_marks_readers_with_a_non_ascii_address(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without VERP the report's address finds the reader, in its stored form (A-label domain)."""
    world.add("josé@example.org")
    world.add("用户@xn--fsqu00a.xn--4rr70v")
    world.add("böb@example.org")
    report = global_dsn(UTF8_BLOCKS, "daily@ree-news.example.com", "8bit")
    out = run_bounces(world, tmp_path / "mbox", [report], capsys)
    assert "bounced=2, counted=0, ignored=1, unknown=0" in out
    assert world.status_of("josé@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("用户@xn--fsqu00a.xn--4rr70v") is SubscriberStatus.BOUNCED
    assert world.status_of("böb@example.org") is SubscriberStatus.ACTIVE


def test_status_lists_recent_issues_with_counts(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(world.config), "status"]) == 0
    assert "no issues yet" in capsys.readouterr().out
    assert world.send("--date", ISSUE_DATE) == 0
    capsys.readouterr()
    assert main(["--config", str(world.config), "status"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^{ISSUE_DATE}\s+sent\s+ended \S+ \S+ UTC\s+sent=3$", out, re.M)
    assert re.search(r"^\s+not reached: 0$", out, re.M)
    assert "subscribers: pending=0, active=3" in out


def test_mailto_unsubscribe_requests_are_honoured(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Take the mailto URI from a message as sent, write the mail a client would, process it."""
    from email import message_from_bytes
    from urllib.parse import parse_qs, urlsplit

    assert world.send("--date", ISSUE_DATE) == 0
    sent = next(m for m in world.smtp.messages if m.rcpt_tos == ("ann@example.org",))
    header = str(message_from_bytes(sent.data)["List-Unsubscribe"])
    mailto = re.search(r"<(mailto:[^>]+)>", header)
    assert mailto is not None
    uri = urlsplit(mailto.group(1))
    requests = []
    for subject in (parse_qs(uri.query)["subject"][0], "unsubscribe abc.forged", "hello"):
        request = EmailMessage()
        request["From"] = "ann@example.org"
        request["To"] = uri.path
        request["Subject"] = subject
        request.set_content("")
        requests.append(request)
    box = mailbox.mbox(tmp_path / "unsubscribe.mbox")
    for request in requests:
        box.add(request)
    box.close()
    capsys.readouterr()
    assert (
        main(["--config", str(world.config), "unsubscribes", str(tmp_path / "unsubscribe.mbox")])
        == 0
    )
    assert "unsubscribed=1, ignored=2" in capsys.readouterr().out
    assert world.status_of("ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert world.status_of("bob@example.org") is SubscriberStatus.ACTIVE
