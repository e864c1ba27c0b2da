"""A web sign-up with letters outside ASCII before the @-sign (`[smtp] smtputf8 = true`): the
confirmation mail goes out as an RFC 6532 message with SMTPUTF8, and its link confirms."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.models import SubscriberStatus
from tests.support.smtp_server import RecordingHandler, SmtpServer
from tests.support.web import CONFIRM_LINK, Servers, WebServer, text_part

TYPED = "José.Müller@例子.广告"
STORED = "josé.müller@xn--fsqu00a.xn--4rr70v"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_a_utf8_sign_up_gets_its_confirmation_and_can_confirm(
    tmp_path: Path, servers: Servers, store_url: str, pipelining: bool
) -> None:
    handler = RecordingHandler(pipelining=pipelining)
    with (
        SmtpServer(handler, enable_SMTPUTF8=True) as relay,
        WebServer(
            tmp_path, servers, store_url=store_url, smtputf8=True, relay_port=relay.port
        ) as web,
    ):
        page = web.sign_up(TYPED)
        assert page.status_code == 200 and STORED in page.text
        web.idle()
        assert web.status(STORED) is SubscriberStatus.PENDING
        [received] = relay.messages
        assert received.rcpt_tos == (STORED,)
        assert received.mail_options == ("SMTPUTF8",)
        message = email.message_from_bytes(received.data, policy=policy.SMTPUTF8)
        assert isinstance(message, EmailMessage) and not message.defects
        assert str(message["To"]) == STORED
        text = text_part(message)
        assert STORED in text
        link = CONFIRM_LINK.search(text)
        assert link is not None
        confirmed = web.client.post(link.group(0).removeprefix(web.url))
        assert confirmed.status_code == 200
        assert web.status(STORED) is SubscriberStatus.ACTIVE


def test_without_the_setting_the_address_is_refused_and_nothing_is_sent(
    tmp_path: Path, servers: Servers
) -> None:
    with (
        SmtpServer(enable_SMTPUTF8=True) as relay,
        WebServer(tmp_path, servers, relay_port=relay.port) as web,
    ):
        page = web.sign_up(TYPED)
        web.idle()
        assert page.status_code == 422
        assert web.status(STORED) is None
        assert relay.messages == []
