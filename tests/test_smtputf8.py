"""Readers whose address has letters outside ASCII before the @-sign (`[smtp] smtputf8 = true`).

End to end: the sample feed over HTTP, a real store (SQLite and PostgreSQL), the real `send`
command, and aiosmtpd as the relay, with and without SMTPUTF8 and PIPELINING. What arrived is
read back from the relay's bytes with the email package's SMTPUTF8 policy.
"""

from __future__ import annotations

import email
import quopri
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from newsletter.bounces import is_hard_bounce
from newsletter.cli.report import EXIT_PARTIAL
from newsletter.errors import DeliveryError, PermanentDeliveryError
from newsletter.mail.smtp import (
    PipelinedConnection,
    SmtpConnection,
    SmtpTransport,
    mail_parameters,
)
from newsletter.models import SubscriberStatus
from tests.support.pool_harness import SENDER, run_bounded, smtp_config
from tests.support.smtp_server import Received, RecordingHandler, SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment, deployment

ASCII_READERS = ["alice@example.org", "bob@example.net"]
# stored form (normalize_address) -> the address on the wire and in To
UTF8_READERS = {
    "josé@example.org": "josé@example.org",
    "用户@xn--fsqu00a.xn--4rr70v": "用户@xn--fsqu00a.xn--4rr70v",  # typed as 用户@例子.广告
    "zoë@bücher.example": "zoë@xn--bcher-kva.example",  # a legacy row with a U-label domain
}
# Rows no sign-up would store (the validator refuses them): line separators in the local part.
LOOKALIKE_BREAKS = ("evil\u2028bcc@example.org", "evil\x85bcc@example.org")
SMTPUTF8_ON = {"smtputf8 = false": "smtputf8 = true"}
PIPELINING = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


@contextmanager
def world(
    tmp_path: Path,
    store_url: str,
    *,
    relay_utf8: bool,
    pipelining: bool,
    extra: tuple[str, ...] = (),
) -> Iterator[Deployment]:
    options: dict[str, Any] = {"enable_SMTPUTF8": True} if relay_utf8 else {}
    handler = RecordingHandler(pipelining=pipelining)
    with (
        SmtpServer(handler, **options) as smtp,
        deployment(
            tmp_path, smtp, ASCII_READERS, replace=SMTPUTF8_ON, database_url=store_url
        ) as deployed,
    ):
        for address in [*UTF8_READERS, *extra]:
            deployed.add(address)
        yield deployed


def parsed(item: Received) -> EmailMessage:
    message = email.message_from_bytes(item.data, policy=policy.SMTPUTF8)
    assert isinstance(message, EmailMessage)
    return message


def undo_surrogates(text: str) -> str:
    """Python 3.11's address parser leaves raw UTF-8 bytes as surrogate escapes (str() of the
    header decodes them; `.addresses` does not): turn them back into the text they spell."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8")


def detail(deployed: Deployment, address: str) -> str:
    exported = deployed.store.export_subscriber(address)
    assert exported is not None
    (row,) = exported["deliveries"]
    return str(row["detail"])


@PIPELINING
def test_every_reader_gets_one_copy_through_a_relay_with_smtputf8(
    tmp_path: Path, store_url: str, pipelining: bool
) -> None:
    with world(tmp_path, store_url, relay_utf8=True, pipelining=pipelining) as deployed:
        assert deployed.send("--date", ISSUE_DATE) == 0
        received = deployed.smtp.messages
        ledger = deployed.ledger()
    wire = [*ASCII_READERS, *UTF8_READERS.values()]
    assert Counter(item.rcpt_tos[0] for item in received) == Counter(wire)
    assert ledger == {address: "sent" for address in [*ASCII_READERS, *UTF8_READERS]}
    for item in received:
        (rcpt,) = item.rcpt_tos
        message = parsed(item)
        assert str(message["To"]) == rcpt
        assert undo_surrogates(message["To"].addresses[0].addr_spec) == rcpt
        assert not message.defects and all(not part.defects for part in message.walk())
        head = item.data.partition(b"\r\n\r\n")[0]
        if rcpt.isascii():
            assert item.mail_options == ()  # the transaction as it always was
            assert head.isascii()
        else:
            assert item.mail_options == ("SMTPUTF8",)
            # RFC 6532: raw UTF-8 in To, and nowhere else in the header block
            assert f"\r\nTo: {rcpt}\r\n".encode() in b"\r\n" + head
            assert b"=?" not in head.partition(b"\r\nTo: ")[2].partition(b"\r\n")[0]
            assert head.replace(f"To: {rcpt}".encode(), b"To: x").isascii()
        check_body(item, message, rcpt)


def check_body(item: Received, message: EmailMessage, address: str) -> None:
    """The address in both parts, as quoted-printable UTF-8 the parts declare."""
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    for part in (plain, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert address in part.get_content()
    body = item.data.partition(b"\r\n\r\n")[2]
    assert body.isascii()  # 7bit on the wire: only the To field needs SMTPUTF8
    qp = quopri.encodestring(address.encode("utf-8"))
    assert address.isascii() or qp in body.replace(b"=\r\n", b"")


@PIPELINING
def test_a_relay_without_smtputf8_fails_only_the_readers_that_need_it(
    tmp_path: Path, store_url: str, pipelining: bool
) -> None:
    with world(tmp_path, store_url, relay_utf8=False, pipelining=pipelining) as deployed:
        assert deployed.send("--date", ISSUE_DATE) == EXIT_PARTIAL  # some readers not reached
        received = deployed.smtp.messages
        ledger = deployed.ledger()
        reasons = {address: detail(deployed, address) for address in UTF8_READERS}
        statuses = {a: deployed.status_of(a) for a in [*ASCII_READERS, *UTF8_READERS]}
    assert sorted(item.rcpt_tos[0] for item in received) == sorted(ASCII_READERS)
    assert all(item.mail_options == () for item in received)
    assert ledger == {
        **{address: "sent" for address in ASCII_READERS},
        **{address: "failed" for address in UTF8_READERS},
    }
    for reason in reasons.values():
        assert "SMTPUTF8" in reason and "relay did not offer it" in reason, reason
    # The relay's shortcoming is not the reader's: nobody is marked bounced for it.
    assert set(statuses.values()) == {SubscriberStatus.ACTIVE}


@PIPELINING
def test_line_separators_in_a_stored_local_part_inject_nothing(
    tmp_path: Path, pipelining: bool
) -> None:
    sqlite = f"sqlite:///{tmp_path / 's.db'}"
    with world(
        tmp_path, sqlite, relay_utf8=True, pipelining=pipelining, extra=LOOKALIKE_BREAKS
    ) as deployed:
        assert deployed.send("--date", ISSUE_DATE) == EXIT_PARTIAL
        received = deployed.smtp.messages
        ledger = deployed.ledger()
        reasons = [detail(deployed, address) for address in LOOKALIKE_BREAKS]
    assert {address: ledger[address] for address in LOOKALIKE_BREAKS} == dict.fromkeys(
        LOOKALIKE_BREAKS, "failed"
    )
    assert all("unsafe value for a header" in reason for reason in reasons), reasons
    assert len(received) == len(ASCII_READERS) + len(UTF8_READERS)
    for item in received:
        # Not a bare b"bcc": base64 in the DKIM signature or a token can spell it by chance.
        assert b"bcc@example.org" not in item.data.lower()
        assert "Bcc" not in parsed(item)  # header names match case-insensitively
        assert not any("bcc" in rcpt for rcpt in item.rcpt_tos)
        assert sorted(parsed(item).keys()) == sorted(parsed(received[0]).keys())


# --- the transaction, on one session -------------------------------------------------------


def mail_to(address: str) -> bytes:
    return f"From: {SENDER}\r\nTo: {address}\r\nSubject: s\r\n\r\nbody\r\n".encode()


@PIPELINING
@pytest.mark.parametrize("relay_utf8", [True, False], ids=["smtputf8", "ascii-only"])
def test_one_session_carries_ascii_and_utf8_readers(pipelining: bool, relay_utf8: bool) -> None:
    """A refusal for want of SMTPUTF8 writes nothing, so the session goes on to the next reader."""
    readers = ["ann@example.org", "josé@example.org", "bob@example.org"]
    options: dict[str, Any] = {"enable_SMTPUTF8": True} if relay_utf8 else {}

    async def scenario(port: int) -> list[str | DeliveryError]:
        connection = await SmtpTransport(smtp_config(port)).connect()
        assert isinstance(connection, PipelinedConnection if pipelining else SmtpConnection)
        replies: list[str | DeliveryError] = []
        for address in readers:
            try:
                replies.append(await connection.send(SENDER, address, mail_to(address)))
            except DeliveryError as exc:
                replies.append(exc)
        await connection.close()
        return replies

    with SmtpServer(RecordingHandler(pipelining=pipelining), **options) as smtp:
        replies = run_bounded(scenario(smtp.port))
        received = smtp.messages
        sessions = len(smtp.sessions)
    assert sessions == 1
    options_by_rcpt = {item.rcpt_tos[0]: item.mail_options for item in received}
    if relay_utf8:
        assert all(isinstance(reply, str) for reply in replies)
        assert options_by_rcpt == {
            "ann@example.org": (), "josé@example.org": ("SMTPUTF8",), "bob@example.org": ()
        }  # fmt: skip
        return
    refused = replies[1]
    assert isinstance(refused, PermanentDeliveryError) and refused.code == 0
    assert "SMTPUTF8" in str(refused) and not is_hard_bounce(refused.code, str(refused))
    assert options_by_rcpt == {"ann@example.org": (), "bob@example.org": ()}


def test_smtputf8_is_asked_for_exactly_when_the_envelope_or_header_has_utf8() -> None:
    ascii_mail = mail_to("ann@example.org")
    assert mail_parameters(SENDER, "ann@example.org", ascii_mail, smtputf8=True) == b""
    assert mail_parameters(SENDER, "ann@example.org", ascii_mail, smtputf8=False) == b""
    utf8_mail = mail_to("josé@example.org")
    assert mail_parameters(SENDER, "josé@example.org", utf8_mail, smtputf8=True) == b" SMTPUTF8"
    assert mail_parameters(SENDER, "ann@example.org", utf8_mail, smtputf8=True) == b" SMTPUTF8"
    assert mail_parameters("bounce@exämple.org", "a@b.org", ascii_mail, smtputf8=True) != b""
    eight_bit_body = ascii_mail + "Zürich\r\n".encode()  # 8BITMIME's business, not SMTPUTF8's
    assert mail_parameters(SENDER, "ann@example.org", eight_bit_body, smtputf8=False) == b""
    with pytest.raises(PermanentDeliveryError, match="SMTPUTF8"):
        mail_parameters(SENDER, "josé@example.org", utf8_mail, smtputf8=False)
