"""What comes back: VERP senders, bounce classification, DSNs read from mbox and Maildir."""

from __future__ import annotations

import base64
import json
import mailbox
import quopri
import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import pytest

from newsletter.bounces import Verp, is_hard_bounce
from newsletter.cli.main import main
from newsletter.mail.inbound import parse_dsn
from newsletter.models import SubscriberStatus
from tests.support.config import SAMPLE, make_config
from tests.support.feedserver import FeedServer
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment, deployment

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


def dsn(
    final_recipient: str,
    action: str,
    status: str,
    to: str,
    returned: Message | str | None = None,
) -> Message:
    """A delivery-status notification as an MTA would write it (RFC 3464), with the returned
    original as a whole message (message/rfc822) or its headers only (text/rfc822-headers)."""
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
    if isinstance(returned, str):
        report.attach(MIMEText(returned, "rfc822-headers"))
    elif returned is not None:
        report.attach(MIMEMessage(returned))
    return report


def test_parse_dsn_reads_each_recipient_block() -> None:
    headers = "Message-ID: <a.1@ree-news.example.com>\r\nSubject: REE Daily\r\n\r\n"
    notice = dsn("Gone@Example.org", "failed", "5.1.1", "bounce+3-x@b.test", headers)
    parsed = parse_dsn(_reparse(notice))
    assert len(parsed) == 1
    only = parsed[0]
    assert (only.final_recipient, only.action, only.status) == (
        "Gone@Example.org",
        "failed",
        "5.1.1",
    )
    assert only.hard and only.verp == ("bounce+3-x@b.test",)
    assert only.message_ids == ("<a.1@ree-news.example.com>",)
    delayed = parse_dsn(_reparse(dsn("a@example.org", "delayed", "4.4.1", "x@y.test")))[0]
    assert not delayed.hard and not delayed.soft and delayed.message_ids == ()
    policy_refusal = parse_dsn(_reparse(dsn("a@example.org", "failed", "5.7.1", "x@y.test")))[0]
    assert policy_refusal.soft and not policy_refusal.hard
    plain = EmailMessage()
    plain.set_content("not a report")
    assert parse_dsn(plain) == []


def test_parse_dsn_reads_the_returned_message_and_where_the_report_was_delivered() -> None:
    """The whole original (message/rfc822) serves as well as its headers; the VERP candidates
    are every header an MTA writes the envelope recipient into."""
    original = EmailMessage()
    original["Message-ID"] = "<b.2@ree-news.example.com>"
    original["Subject"] = "REE Daily"
    original.set_content("The day's news.")
    notice = dsn("x@example.org", "failed", "5.1.1", "daily@ree-news.example.com", original)
    notice["Delivered-To"] = "bounce+4-0123456789@b.test"
    notice["X-Original-To"] = "bounce+5-0123456789@b.test"
    (only,) = parse_dsn(_reparse(notice))
    assert only.message_ids == ("<b.2@ree-news.example.com>",)
    assert only.verp == (
        "daily@ree-news.example.com",
        "bounce+4-0123456789@b.test",
        "bounce+5-0123456789@b.test",
    )


def test_a_report_about_a_report_names_only_its_own_recipients() -> None:
    """A delivery-status part inside the returned original is some other mail's report."""
    inner = dsn("victim@example.org", "failed", "5.1.1", "x@y.test")
    outer = dsn("a@example.org", "delayed", "4.4.1", "x@y.test", inner)
    assert [r.final_recipient for r in parse_dsn(_reparse(outer))] == ["a@example.org"]


def global_dsn(
    blocks: list[str],
    to: str,
    encoding: str,
    returned: bytes | None = None,
    returned_type: str = "message/global-headers",
) -> bytes:
    """A report about mail sent with SMTPUTF8, as RFC 6533 has an MTA write it: UTF-8 fields in
    message/global-delivery-status, in any transfer encoding, and the returned original (or its
    headers) as message/global (-headers), UTF-8 too, in the same encoding."""
    body = "\r\n\r\n".join(["Reporting-MTA: dns; mx.example.org", *blocks]).encode() + b"\r\n"
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
    raw = head.encode() + _encoded(body, encoding)
    if returned is not None:
        raw += (
            f"\r\n--RR\r\nContent-Type: {returned_type}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode() + _encoded(returned, encoding)
    return raw + b"\r\n--RR--\r\n"


def _encoded(body: bytes, encoding: str) -> bytes:
    return {
        "8bit": body,
        "base64": base64.encodebytes(body),
        "quoted-printable": quopri.encodestring(body),
    }[encoding]


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
    assert {r.verp for r in parsed} == {("daily@ree-news.example.com",)}


@pytest.mark.parametrize("encoding", ["8bit", "base64", "quoted-printable"])
@pytest.mark.parametrize("returned_type", ["message/global-headers", "message/global"])
def test_parse_dsn_reads_the_message_id_of_a_utf8_original(
    encoding: str, returned_type: str
) -> None:
    """RFC 6533 returns the original as message/global(-headers), UTF-8, in any encoding."""
    original = (
        "To: josé@example.org\r\nMessage-ID: <c.3@ree-news.example.com>\r\n"
        "Subject: Grüße\r\n\r\nBody\r\n"
    ).encode()
    raw = global_dsn(
        UTF8_BLOCKS[:1], "daily@ree-news.example.com", encoding, original, returned_type
    )
    (only,) = parse_dsn(message_from_bytes(raw, policy=policy.compat32))
    assert only.message_ids == ("<c.3@ree-news.example.com>",)


def test_a_report_with_broken_base64_is_read_without_a_traceback() -> None:
    """Bad padding in the status part or the returned headers: nothing found, nothing raised."""
    raw = (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: x@y.test\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=global-delivery-status; boundary=RR\r\n"
        "\r\n--RR\r\nContent-Type: message/global-delivery-status\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n{status}\r\n"
        "--RR\r\nContent-Type: message/global-headers\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nQUJDRA=\r\n--RR--\r\n"
    )
    broken = raw.format(status="QUJDRA=").encode()
    assert parse_dsn(message_from_bytes(broken, policy=policy.compat32)) == []
    fields = "Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@x\r\nAction: failed\r\n"
    readable = raw.format(status=base64.b64encode(fields.encode()).decode()).encode()
    (only,) = parse_dsn(message_from_bytes(readable, policy=policy.compat32))
    assert only.action == "failed" and only.message_ids == ()


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
    *args: str,
) -> str:
    """`newsletter bounces` over an mbox (path "...mbox") or a Maildir holding `notices`."""
    box: mailbox.Mailbox[mailbox.Message]
    box = mailbox.mbox(path) if path.name == "mbox" else mailbox.Maildir(path)
    for notice in notices:
        box.add(notice)
    box.close()
    return read_bounces(world, path, capsys, *args)


def read_bounces(
    world: Deployment, path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> str:
    capsys.readouterr()
    command = ["--config", str(world.config), "bounces", *args, str(path)]
    assert main(command, clock=world.clock) == 0
    return capsys.readouterr().out


def sent_headers(world: Deployment, address: str) -> bytes:
    """The header block of the message the send really mailed to `address` (its Message-ID is
    the one the ledger holds), as an MTA returns it in a DSN."""
    [data] = [m.data for m in world.smtp.messages if m.rcpt_tos == (address,)]
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def status_json(world: Deployment, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["--config", str(world.config), "status", "--json"], clock=world.clock) == 0
    [issue] = json.loads(capsys.readouterr().out)["issues"]
    assert isinstance(issue, dict)
    return issue


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_bounces_command_marks_hard_bounces_found_by_message_id_or_verp(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A DSN finds its reader by the returned original's Message-ID or by the VERP sender it was
    delivered to; one that names only an address changes nobody, whoever it names."""
    assert world.send("--date", ISSUE_DATE) == 0
    verp = Verp([SECRET], VERP_DOMAIN)
    ann = sent_headers(world, "ann@example.org").decode()
    notices = [
        dsn("ann@example.org", "failed", "5.1.1", "daily@ree-news.example.com", ann),
        dsn(
            "rewritten@relay.example", "failed", "5.1.1", verp.address(world.ids["bob@example.org"])
        ),
        dsn("cy@example.org", "delayed", "4.4.1", "daily@ree-news.example.com"),
        # a real reader's address, and neither our Message-ID nor our VERP sender: forged or
        # not, it is no proof of anything
        dsn("cy@example.org", "failed", "5.1.1", "daily@ree-news.example.com"),
        dsn("stranger@example.org", "failed", "5.1.1", "daily@ree-news.example.com"),
    ]
    out = run_bounces(world, tmp_path / kind, notices, capsys)
    assert "bounced=2, counted=0, ignored=1, unknown=2" in out
    assert "ann@example.org: hard bounce (by message-id): bounced" in out
    assert "bob@example.org: hard bounce (by verp): bounced" in out
    assert world.status_of("ann@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("bob@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("cy@example.org") is SubscriberStatus.ACTIVE


def test_a_dsn_read_twice_counts_once_and_shows_in_the_issues_rates(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Below the threshold (2), a second reading would have bounced ann: it changes nothing.
    The bounce is the issue's: status shows it in the hard-bounce rate, a policy refusal
    (5.7.1) as a soft bounce that suppresses nobody."""
    world.config.write_text(
        world.config.read_text().replace("bounce_threshold = 1", "bounce_threshold = 2")
    )
    assert world.send("--date", ISSUE_DATE) == 0
    ann = sent_headers(world, "ann@example.org").decode()
    bob = sent_headers(world, "bob@example.org").decode()
    notices = [
        dsn("ann@example.org", "failed", "5.1.1", "daily@ree-news.example.com", ann),
        dsn("bob@example.org", "failed", "5.7.1", "daily@ree-news.example.com", bob),
    ]
    out = run_bounces(world, tmp_path / "mbox", notices, capsys)
    assert "bounced=0, counted=1, ignored=1, unknown=0" in out
    again = read_bounces(world, tmp_path / "mbox", capsys)
    assert "bounced=0, counted=0, ignored=2, unknown=0" in again
    assert world.status_of("ann@example.org") is SubscriberStatus.ACTIVE  # one bounce of two
    assert world.status_of("bob@example.org") is SubscriberStatus.ACTIVE
    issue = status_json(world, capsys)
    assert (issue["hard_bounces"], issue["soft_bounces"]) == (1, 1)
    assert issue["hard_bounce_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert issue["warnings"]  # 33% is over Amazon SES's 10% limit


def test_a_dry_run_names_the_reader_and_changes_nothing(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.send("--date", ISSUE_DATE) == 0
    ann = sent_headers(world, "ann@example.org").decode()
    notice = dsn("ann@example.org", "failed", "5.1.1", "daily@ree-news.example.com", ann)
    out = run_bounces(world, tmp_path / "mbox", [notice], capsys, "--dry-run")
    assert "ann@example.org: hard bounce (by message-id): would apply (hard_bounce)" in out
    assert "bounced=0, counted=1, ignored=0, unknown=0" in out
    assert world.status_of("ann@example.org") is SubscriberStatus.ACTIVE
    assert status_json(world, capsys)["hard_bounces"] == 0
    assert "counted=0" in read_bounces(world, tmp_path / "mbox", capsys)  # the real run
    assert world.status_of("ann@example.org") is SubscriberStatus.BOUNCED


UTF8_RECIPIENTS = ["josé@example.org", "用户@xn--fsqu00a.xn--4rr70v", "böb@example.org"]


@pytest.mark.parametrize("encoding", ["8bit", "base64"])
def test_bounces_command_marks_readers_with_a_non_ascii_address(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    encoding: str,
) -> None:
    """RFC 6533 reports about mail sent with SMTPUTF8 find the reader by the Message-ID of the
    returned original's headers (message/global-headers); the address alone finds nobody."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    utf8 = {"smtputf8 = false": "smtputf8 = true"}
    with (
        SmtpServer(enable_SMTPUTF8=True) as smtp,
        deployment(tmp_path, smtp, UTF8_RECIPIENTS, replace=utf8) as world,
    ):
        assert world.send("--date", ISSUE_DATE) == 0
        reports = [
            global_dsn(
                UTF8_BLOCKS[index : index + 1],
                "daily@ree-news.example.com",
                encoding,
                sent_headers(world, address),
            )
            for index, address in enumerate(UTF8_RECIPIENTS)
        ]
        reports.append(global_dsn(UTF8_BLOCKS[:2], "daily@ree-news.example.com", encoding))
        out = run_bounces(world, tmp_path / "mbox", reports, capsys)
        assert "bounced=2, counted=0, ignored=1, unknown=2" in out
        statuses = [world.status_of(address) for address in UTF8_RECIPIENTS]
    assert statuses == [SubscriberStatus.BOUNCED, SubscriberStatus.BOUNCED, SubscriberStatus.ACTIVE]


def test_the_hard_bounce_rate_counts_dead_mailboxes_not_every_refusal(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The relay's refusals during the send: 5.1.1 and a bare 551 are dead mailboxes, a 5.7.1
    policy refusal is not (README: not counted as a bounce), so it stays out of the rate's
    numerator while it stays in the attempted messages below it."""
    world.add("dan@example.org")
    refusals = {
        ("rcpt", "ann@example.org"): "550 5.1.1 No such user",
        ("data", "bob@example.org"): "550 5.7.1 Message rejected by policy",
        ("rcpt", "dan@example.org"): "551 User not local",
    }
    world.smtp.handler.behaviour = lambda at, rcpt: refusals.get((at, rcpt))
    assert world.send("--date", ISSUE_DATE) == 3
    issue = status_json(world, capsys)
    assert issue["ledger"] == {"failed": 3, "sent": 1}
    assert (issue["hard_refusals"], issue["hard_bounces"]) == (2, 0)
    assert issue["hard_bounce_rate"] == pytest.approx(2 / 4)
    assert main(["--config", str(world.config), "status"], clock=world.clock) == 0
    assert "hard bounces: 0 + 2 refused as no such mailbox (50.00%)" in capsys.readouterr().out
    assert world.status_of("bob@example.org") is SubscriberStatus.ACTIVE


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
