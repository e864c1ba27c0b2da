"""What comes back after the send, read from mailboxes: feedback-loop reports (ARF) through
`newsletter complaints`, bounces in formats other than RFC 3464 through `newsletter bounces`
(flufl.bounce), and the rates `newsletter status` shows per issue.

A real issue is sent first (feeds over HTTP, aiosmtpd), so every report is built from a message
that was really sent: its Message-ID, its VERP sender, its List-Unsubscribe header.
"""

from __future__ import annotations

import json
import mailbox
import re
from collections.abc import Iterator
from email.message import EmailMessage, Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from newsletter.bounces import Verp
from newsletter.cli.main import main
from newsletter.mail.arf import read_report
from newsletter.models import SubscriberStatus
from tests.support.config import SAMPLE, make_config
from tests.support.feedserver import FeedServer
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment

VERP_DOMAIN = "bounce.ree-news.example.com"
READERS = ("ann@example.org", "bob@example.org", "cy@example.org")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """Three readers who were sent the issue of ISSUE_DATE with VERP senders."""
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
        for address in READERS:
            world.add(address)
        assert world.send("--date", ISSUE_DATE) == 0
        try:
            yield world
        finally:
            world.store.close()


def sent_to(world: Deployment, address: str) -> EmailMessage:
    [found] = [m for m in world.received() if m["To"] == address]
    return found


def envelope_of(world: Deployment, address: str) -> str:
    [found] = [m.mail_from for m in world.smtp.messages if m.rcpt_tos == (address,)]
    return str(found)


def arf(
    original: Message | str,
    *,
    feedback_type: str = "abuse",
    rcpt_to: str = "",
    mail_from: str = "",
    report_id: str = "<report-1@feedback.yahoo.example>",
) -> Message:
    """A feedback report as RFC 5965 lays it out (and Yahoo and Microsoft send it)."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>"
    report["Subject"] = "FW: REE Daily"
    report["Message-ID"] = report_id
    report.attach(MIMEText("This is an email abuse report.", "plain"))
    fields = Message()
    fields["Feedback-Type"] = feedback_type
    fields["User-Agent"] = "Yahoo!-Mail-Feedback/2.0"
    fields["Version"] = "1"
    if mail_from:
        fields["Original-Mail-From"] = mail_from
    if rcpt_to:
        fields["Original-Rcpt-To"] = rcpt_to
    part = MIMEMessage(fields, "feedback-report")
    report.attach(part)
    if isinstance(original, str):  # headers only (text/rfc822-headers)
        report.attach(MIMEText(original, "rfc822-headers"))
    else:
        report.attach(MIMEMessage(original))
    return report


def mailbox_of(path: Path, *messages: Message | bytes) -> Path:
    box = mailbox.mbox(path)
    for message in messages:
        box.add(message)
    box.close()
    return path


def run(world: Deployment, *args: str) -> int:
    return main(["--config", str(world.config), *args], clock=world.clock)


def test_a_yahoo_complaint_unsubscribes_once_and_counts_for_the_issue(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = sent_to(world, "bob@example.org")
    path = mailbox_of(tmp_path / "fbl", arf(original, rcpt_to="bob@example.org"))
    capsys.readouterr()
    assert run(world, "complaints", str(path)) == 0
    out = capsys.readouterr().out
    assert "bob@example.org: complaint (by message-id): unsubscribed" in out
    assert "unsubscribed=1" in out
    assert world.status_of("bob@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert run(world, "complaints", str(path)) == 0  # the same mailbox read again
    assert "duplicate=1" in capsys.readouterr().out
    assert run(world, "status") == 0
    out = capsys.readouterr().out
    assert re.search(r"complaints: 1 \(33\.33%\)", out), out
    assert "warning: complaint rate 33.33% is over the 0.3% limit (Gmail and Yahoo" in out
    assert run(world, "status", "--json") == 0
    [issue] = json.loads(capsys.readouterr().out)["issues"]
    assert issue["complaints"] == 1 and issue["ledger"] == {"sent": 3}
    assert issue["complaint_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert issue["warnings"] and issue["hard_bounces"] == 0


def test_a_masked_jmrp_report_is_matched_by_the_verp_sender(
    world: Deployment, tmp_path: Path
) -> None:
    original = sent_to(world, "cy@example.org")
    headers = (
        f"Return-Path: <{envelope_of(world, 'cy@example.org')}>\r\n"
        f"From: {original['From']}\r\nTo: xxxxxxx@outlook.example\r\n"
        "Subject: REE Daily\r\n\r\n"
    )
    path = mailbox_of(tmp_path / "jmrp", arf(headers, rcpt_to="xxxxxxx@outlook.example"))
    assert run(world, "complaints", str(path)) == 0
    assert world.status_of("cy@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_the_signed_unsubscribe_link_alone_finds_the_reader(
    world: Deployment, tmp_path: Path
) -> None:
    original = sent_to(world, "ann@example.org")
    headers = f"List-Unsubscribe: {original['List-Unsubscribe']}\r\nSubject: REE Daily\r\n\r\n"
    path = mailbox_of(tmp_path / "fbl", arf(headers))
    assert run(world, "complaints", str(path)) == 0
    assert world.status_of("ann@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_reports_naming_only_an_address_or_forged_ids_change_nobody(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = sent_to(world, "ann@example.org")
    forged_verp = Verp(["someone-else's key"], VERP_DOMAIN).address(world.ids["ann@example.org"])
    reports = [
        arf("Subject: x\r\n\r\n", rcpt_to="ann@example.org", report_id="<r1@x>"),
        arf(
            "Message-ID: <20261128.deadbeef.1.000000000000@ree-news.example.com>\r\n\r\n",
            rcpt_to="ann@example.org",
            report_id="<r2@x>",
        ),
        arf(f"Return-Path: <{forged_verp}>\r\n\r\n", report_id="<r3@x>"),
        arf(
            "List-Unsubscribe: <https://ree-news.example.com/newsletter/u/forged.token>\r\n\r\n",
            report_id="<r4@x>",
        ),
        arf(real, feedback_type="not-spam", report_id="<r5@x>"),
        arf(real, feedback_type="virus", report_id="<r6@x>"),
        MIMEText("Just a note, not a report."),
    ]
    path = mailbox_of(tmp_path / "fbl", *reports)
    capsys.readouterr()
    assert run(world, "complaints", str(path)) == 0
    assert capsys.readouterr().out.strip() == "ignored=2, not a report=1, unmatched=4"
    for address in READERS:
        assert world.status_of(address) is SubscriberStatus.ACTIVE


def test_a_dry_run_names_the_reader_and_changes_nothing(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = mailbox_of(tmp_path / "fbl", arf(sent_to(world, "bob@example.org")))
    capsys.readouterr()
    assert run(world, "complaints", "--dry-run", str(path)) == 0
    assert "bob@example.org: complaint (by message-id): would apply (complaint)" in (
        capsys.readouterr().out
    )
    assert world.status_of("bob@example.org") is SubscriberStatus.ACTIVE


def test_the_arf_reader_tolerates_real_world_deviations() -> None:
    report = arf("Message-ID: <a@b>\r\n\r\n")
    raw = report.as_bytes().replace(b"Feedback-Type: abuse", b"feedback-type: ABUSE")
    raw = raw.replace(b"Version: 1", b"Version: 3.0")
    from email import message_from_bytes

    parsed = read_report(message_from_bytes(raw))
    assert parsed is not None and parsed.complaint and parsed.message_ids == ("<a@b>",)
    assert read_report(MIMEText("hello")) is None
    dsn = MIMEMultipart("report", report_type="delivery-status")
    assert read_report(dsn) is None


QMAIL = """\
From: MAILER-DAEMON@mx.example.org
To: {to}
Subject: failure notice

Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{address}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Message-ID: {message_id}
Subject: REE Daily

The day's news.
"""

EXIM = """\
From: Mail Delivery System <Mailer-Daemon@mx.example.org>
To: {to}
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {address}
    SMTP error from remote mail server after RCPT TO:<{address}>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Message-ID: {message_id}
Subject: REE Daily
"""


def test_non_dsn_bounces_are_read_by_flufl_behind_verp_and_message_id(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, bob = sent_to(world, "ann@example.org"), sent_to(world, "bob@example.org")
    bounces = [
        # qmail, sent to the VERP address: found by VERP (Message-ID ours too)
        QMAIL.format(
            to=envelope_of(world, "ann@example.org"),
            address="ann@example.org",
            message_id=ann["Message-ID"],
        ),
        # old Exim, to the plain sender: found by the Message-ID quoted in the body
        EXIM.format(
            to="daily@ree-news.example.com", address="bob@example.org", message_id=bob["Message-ID"]
        ),
        # naming a reader but neither our Message-ID nor a VERP sender: nobody is touched
        EXIM.format(
            to="daily@ree-news.example.com", address="cy@example.org", message_id="<x@elsewhere>"
        ),
    ]
    path = mailbox_of(tmp_path / "bounces", *(b.encode() for b in bounces))
    capsys.readouterr()
    assert run(world, "bounces", str(path)) == 0
    assert "bounced=2, counted=0, ignored=0, unknown=1" in capsys.readouterr().out
    assert world.status_of("ann@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("bob@example.org") is SubscriberStatus.BOUNCED
    assert world.status_of("cy@example.org") is SubscriberStatus.ACTIVE
    assert run(world, "bounces", str(path)) == 0  # read again: counted once
    assert "bounced=0, counted=0, ignored=3, unknown=0" in capsys.readouterr().out
    assert run(world, "status", "--json") == 0
    [issue] = json.loads(capsys.readouterr().out)["issues"]
    assert issue["hard_bounces"] == 2
    assert issue["hard_bounce_rate"] == pytest.approx(2 / 3, abs=1e-6)


def test_copies_of_one_complaint_count_once_for_the_issue(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whoever holds one genuine digest can mail any number of feedback reports about it, each
    with a report id of their choosing: the reader is unsubscribed once and the issue's
    complaint rate counts one reader, not the pile (which would cross Gmail's 0.3% alone)."""
    original = sent_to(world, "bob@example.org")
    copies = [arf(original, report_id=f"<copy-{n}@forged.example>") for n in range(5)]
    path = mailbox_of(tmp_path / "fbl", *copies)
    capsys.readouterr()
    assert run(world, "complaints", str(path)) == 0
    assert capsys.readouterr().out.strip().endswith("repeat=4, unsubscribed=1")
    assert run(world, "status", "--json") == 0
    [issue] = json.loads(capsys.readouterr().out)["issues"]
    assert issue["complaints"] == 1
    assert issue["complaint_rate"] == pytest.approx(1 / 3, abs=1e-6)


def test_one_readers_bounce_by_two_routes_counts_once(
    world: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two MTAs' notices about ann's one failed digest (found by VERP and by Message-ID) are
    two reports of one bounce: the issue's hard-bounce rate counts ann once."""
    ann = sent_to(world, "ann@example.org")
    bounces = [
        QMAIL.format(
            to=envelope_of(world, "ann@example.org"),
            address="ann@example.org",
            message_id="<unrelated@elsewhere>",
        ),
        EXIM.format(
            to="daily@ree-news.example.com", address="ann@example.org", message_id=ann["Message-ID"]
        ),
    ]
    path = mailbox_of(tmp_path / "bounces", *(b.encode() for b in bounces))
    capsys.readouterr()
    assert run(world, "bounces", str(path)) == 0
    assert "bounced=1, counted=0, ignored=1, unknown=0" in capsys.readouterr().out
    assert run(world, "status", "--json") == 0
    [issue] = json.loads(capsys.readouterr().out)["issues"]
    assert issue["hard_bounces"] == 1
    assert issue["hard_bounce_rate"] == pytest.approx(1 / 3, abs=1e-6)
