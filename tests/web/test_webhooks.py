"""Provider webhooks against the real server: genuine reports change their reader once; forged,
replayed, stale and unauthenticated requests change nothing (every table compared).

Keys and certificates are made by the test (`tests.support.operator`); the SNS certificate is
served by the app's outbound fetch, handed in, so no test reaches Amazon.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.config.operator import WebhooksConfig
from newsletter.models import SubscriberStatus
from newsletter.store.schema import signal_events
from newsletter.web.webhooks import BODY_LIMITS, SENDGRID_BODY_LIMIT
from tests.support.feedserver import FeedServer
from tests.support.operator import (
    CERT_URL,
    KEYS,
    POSTMARK_PASSWORD,
    TOPIC,
    OperatorServer,
    Reader,
    basic,
    mailgun_body,
    post_sns,
    sendgrid_headers,
    sent_reader,
    ses_complaint,
    ses_notification,
    sign_sns,
    sns_message,
)
from tests.support.web import Servers

SECURITY = ("content-security-policy", "referrer-policy", "x-content-type-options", "cache-control")


@pytest.fixture
def op(tmp_path: Path, servers: Servers, store_url: str) -> Iterator[OperatorServer]:
    """The app with every webhook on, once on SQLite and once on PostgreSQL."""
    with OperatorServer(tmp_path, servers, database_url=store_url) as server:
        yield server


def event_rows(op: OperatorServer) -> list[dict[str, object]]:
    with op.store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(signal_events))]


def events(op: OperatorServer) -> list[tuple[object, ...]]:
    columns = ("provider", "kind", "matched_by", "outcome")
    return sorted(tuple(row[c] for c in columns) for row in event_rows(op))


# Amazon SES through SNS


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_complaint_by_our_message_id_unsubscribes_once(
    op: OperatorServer, version: str
) -> None:
    reader = sent_reader(op)
    message = ses_notification(ses_complaint(reader), op.clock(), version=version)
    answer = post_sns(op, message)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok", "outcomes": {"unsubscribed": 1}}
    assert op.status(reader.email) is SubscriberStatus.UNSUBSCRIBED
    assert events(op) == [("ses", "complaint", "message-id", "unsubscribed")]
    before = op.snapshot()
    again = post_sns(op, message)  # SNS retries with the same MessageId
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert op.snapshot() == before
    assert op.certificates.fetched == [CERT_URL]  # fetched once, then cached


def test_ses_bounce_found_by_the_verp_sender_when_headers_are_off(op: OperatorServer) -> None:
    reader = sent_reader(op)
    bounce = {
        "eventType": "Bounce",
        "mail": {"source": op.verp(reader.subscriber_id), "messageId": "0100018c-ses-own-id"},
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": reader.email,
                    "diagnosticCode": f"smtp; 550 5.1.1 <{reader.email}>",
                }
            ],
            "timestamp": "2026-11-28T08:00:00Z",
        },
    }
    answer = post_sns(op, ses_notification(bounce, op.clock()))
    assert answer.json()["outcomes"] == {"bounced": 1}
    assert op.status(reader.email) is SubscriberStatus.BOUNCED
    [row] = event_rows(op)
    assert row["detail"] == "Permanent/General smtp; 550 5.1.1 <<address>>"
    assert reader.email not in str(event_rows(op))  # no address is stored with a report


def test_ses_transient_bounce_is_recorded_and_suppresses_nobody(op: OperatorServer) -> None:
    reader = sent_reader(op)
    bounce = {
        "notificationType": "Bounce",
        "mail": {"headers": [{"name": "message-id", "value": reader.message_id}]},
        "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "x@y.z"}]},
    }
    assert post_sns(op, ses_notification(bounce, op.clock())).json()["outcomes"] == {"soft": 1}
    assert op.status(reader.email) is SubscriberStatus.ACTIVE


def test_ses_complaint_naming_only_an_address_changes_no_reader(op: OperatorServer) -> None:
    reader = sent_reader(op)
    forged_id = "<20261127.1a2b3c4d.1.000000000bad@ree-news.example.com>"
    complaint = ses_complaint(reader, message_id=forged_id)
    answer = post_sns(op, ses_notification(complaint, op.clock()))
    assert answer.json()["outcomes"] == {"unmatched": 1}
    assert op.status(reader.email) is SubscriberStatus.ACTIVE
    assert events(op) == [("ses", "complaint", "", "unmatched")]


@pytest.mark.parametrize("form", ["sealed", "older"])
def test_ses_verp_altered_or_forged_changes_no_reader(op: OperatorServer, form: str) -> None:
    reader = sent_reader(op)
    genuine = op.verp(reader.subscriber_id)
    if form == "sealed":  # one digit of the sealed block changed
        digit = genuine[7]
        forged = genuine[:7] + ("0" if digit != "0" else "1") + genuine[8:]
    else:  # the older form: the reader's id in clear under a made-up MAC
        forged = f"bounce+{reader.subscriber_id}-0000000000@bounce.example.com"
    bounce = {
        "notificationType": "Bounce",
        "mail": {"source": forged},
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": reader.email}],
        },
    }
    assert post_sns(op, ses_notification(bounce, op.clock())).json()["outcomes"] == {"unmatched": 1}
    assert op.status(reader.email) is SubscriberStatus.ACTIVE


def forged_sns_requests(op: OperatorServer) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    reader = sent_reader(op)
    good = ses_notification(ses_complaint(reader), op.clock())
    tampered = {**good, "Message": good["Message"].replace("abuse", "fraud")}
    other_topic = sign_sns({**good, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:theirs"})
    stale = ses_notification(ses_complaint(reader), op.clock() - timedelta(hours=2))
    future = ses_notification(ses_complaint(reader), op.clock() + timedelta(hours=1))
    v3 = sign_sns({**good, "SignatureVersion": "3"})
    cases = [
        ("tampered message", tampered, {}),
        ("another topic, genuinely signed", other_topic, {}),
        ("older than ses_max_age_minutes", stale, {}),
        ("from the future", future, {}),
        ("unknown signature version", v3, {}),
        ("header type differs", good, {"x-amz-sns-message-type": "SubscriptionConfirmation"}),
        ("header id differs", good, {"x-amz-sns-message-id": "another"}),
        ("no signature", {k: v for k, v in good.items() if k != "Signature"}, {}),
        ("signature not base64", {**good, "Signature": "!!"}, {}),
    ]
    for url in (
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "https://s3.amazonaws.com/bucket/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://user@sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.eu-west-1.amazonaws.com/x.pem?download=1",
    ):
        cases.append((f"certificate at {url}", sign_sns({**good, "SigningCertURL": url}), {}))
    return cases


def test_forged_or_stale_sns_requests_change_nothing_and_fetch_nothing(op: OperatorServer) -> None:
    cases = forged_sns_requests(op)
    before = op.snapshot()
    for name, message, headers in cases:
        answer = post_sns(op, message, **headers)
        assert answer.status_code in (400, 403), (name, answer.status_code, answer.text)
        assert answer.json()["status"] == "refused", name
    assert op.snapshot() == before
    assert all(url == CERT_URL for url in op.certificates.fetched)


def test_unreadable_bodies_are_400_and_change_nothing(op: OperatorServer) -> None:
    sent_reader(op)
    before = op.snapshot()
    for path in ("/webhooks/ses", "/webhooks/mailgun", "/webhooks/sendgrid"):
        for body in (b"", b"not json", b"\xff\xfe", b"[]", b'"text"', b"{}"):
            answer = op.client.post(path, content=body)
            assert answer.status_code in (400, 403), (path, body)
    assert op.snapshot() == before


def test_sns_subscription_is_confirmed_once_for_our_topic_only(op: OperatorServer) -> None:
    subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t0k"
    fields = {"Message": "You have chosen to subscribe", "SubscribeURL": subscribe, "Token": "t0k"}
    message = sns_message("SubscriptionConfirmation", fields, op.clock())
    assert post_sns(op, message).json() == {"status": "subscribed"}
    assert op.certificates.fetched == [CERT_URL, subscribe]
    assert post_sns(op, message).json() == {"status": "subscribed"}  # a retry: not fetched again
    assert op.certificates.fetched == [CERT_URL, subscribe]
    elsewhere = {**fields, "SubscribeURL": "https://evil.example/confirm"}
    refused = post_sns(op, sns_message("SubscriptionConfirmation", elsewhere, op.clock()))
    assert refused.status_code == 403
    theirs = sign_sns({**message, "TopicArn": "arn:aws:sns:us-east-1:999999999999:theirs"})
    assert post_sns(op, theirs).status_code == 403
    assert op.certificates.fetched == [CERT_URL, subscribe]


def test_a_failed_sns_confirmation_is_fetched_again_when_sns_retries(op: OperatorServer) -> None:
    """The once-only key is recorded after the SubscribeURL answered 200, not before: a fetch
    that fails (refused, or an error status) is answered 5xx so that SNS retries, the retry
    fetches again, and only once confirmed is a retry answered without fetching."""
    subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t1k"
    fields = {"Message": "You have chosen to subscribe", "SubscribeURL": subscribe, "Token": "t1k"}
    message = sns_message("SubscriptionConfirmation", fields, op.clock())
    with FeedServer() as gone:
        op.certificates.confirm_at = gone.url("/confirm")  # closed below: connection refused
    before = op.snapshot()
    refused = post_sns(op, message)
    assert refused.status_code == 502, refused.text
    assert refused.json() == {
        "status": "refused",
        "reason": "the subscription could not be confirmed yet",
    }  # the reason is ours: no exception text, no traceback
    assert op.snapshot() == before  # no key recorded: the retry is not a duplicate
    with FeedServer() as sns:
        op.certificates.confirm_at = sns.add("/confirm", b"<Error/>", status=503)
        busy = post_sns(op, message)
        assert busy.status_code == 502 and len(sns.hits("/confirm")) == 1
        assert op.snapshot() == before
        sns.add("/confirm", b"<ConfirmSubscriptionResponse/>", content_type="text/xml")
        assert post_sns(op, message).json() == {"status": "subscribed"}
        assert len(sns.hits("/confirm")) == 2
        assert post_sns(op, message).json() == {"status": "subscribed"}  # SNS retries anyway
        assert len(sns.hits("/confirm")) == 2
    assert op.certificates.fetched == [CERT_URL, subscribe, subscribe, subscribe]


def test_a_signing_certificate_sns_could_not_serve_is_a_502_that_sns_retries(
    op: OperatorServer,
) -> None:
    """SNS's certificate host failing (refused, or an error status) is a passing fault, not a
    forgery: 502, so that SNS sends the notification again, and nothing is recorded. A 403
    would lose the report, since SNS never retries a 4xx."""
    reader = sent_reader(op)
    message = ses_notification(ses_complaint(reader), op.clock())
    before = op.snapshot()
    with FeedServer() as gone:
        op.certificates.cert_at = gone.url("/cert.pem")  # closed below: connection refused
    assert post_sns(op, message).status_code == 502
    with FeedServer() as sns:
        op.certificates.cert_at = sns.add("/cert.pem", b"busy", status=503)
        assert post_sns(op, message).status_code == 502
        assert op.snapshot() == before
        sns.add("/cert.pem", KEYS.sns_pem, content_type="application/x-pem-file")
        assert post_sns(op, message).status_code == 200
    assert op.status(reader.email) is SubscriberStatus.UNSUBSCRIBED


def test_ses_validation_text_and_deliveries_are_ignored(op: OperatorServer) -> None:
    reader = sent_reader(op)
    before = op.snapshot()
    text = "Successfully validated SNS topic for Amazon SES event publishing."
    plain = sns_message("Notification", {"Message": text}, op.clock())
    assert post_sns(op, plain).json() == {"status": "ignored"}
    delivery = {"eventType": "Delivery", "mail": {"headers": []}, "delivery": {}}
    assert post_sns(op, ses_notification(delivery, op.clock())).json() == {"status": "ignored"}
    not_spam = ses_complaint(reader)
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert post_sns(op, ses_notification(not_spam, op.clock())).json() == {"status": "ignored"}
    assert op.snapshot() == before


# Postmark


def postmark_bounce(op: OperatorServer, subscriber_id: int, **fields: object) -> dict[str, object]:
    return {
        "RecordType": "Bounce",
        "ID": 4242,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": "reader@example.org",
        "BouncedAt": "2026-11-28T08:28:10.2735393-04:00",
        "Description": "The server was unable to deliver your message",
        "Metadata": {"ree": op.verp(subscriber_id)},
        **fields,
    }


def test_postmark_needs_basic_auth_and_takes_each_event_once(op: OperatorServer) -> None:
    reader = sent_reader(op)
    body = json.dumps(postmark_bounce(op, reader.subscriber_id))
    before = op.snapshot()
    for headers in (
        {},
        basic("postmark", "wrong"),
        basic("someone", POSTMARK_PASSWORD),
        {"Authorization": "Bearer " + POSTMARK_PASSWORD},
        {"Authorization": "Basic !!!"},
    ):
        answer = op.client.post("/webhooks/postmark", content=body, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Basic realm="webhooks"'
    assert op.snapshot() == before
    auth = basic("postmark", POSTMARK_PASSWORD)
    answer = op.client.post("/webhooks/postmark", content=body, headers=auth)
    assert answer.json() == {"status": "ok", "outcomes": {"bounced": 1}}
    assert op.status(reader.email) is SubscriberStatus.BOUNCED
    after = op.snapshot()
    replay = op.client.post("/webhooks/postmark", content=body, headers=auth)
    assert replay.json() == {"status": "ok", "outcomes": {"duplicate": 1}}
    assert op.snapshot() == after


def test_postmark_spam_complaint_and_ignored_types(op: OperatorServer) -> None:
    reader = sent_reader(op)
    auth = basic("postmark", POSTMARK_PASSWORD)
    auto = postmark_bounce(op, reader.subscriber_id, Type="AutoResponder", ID=1)
    assert op.client.post("/webhooks/postmark", json=auto, headers=auth).json() == {
        "status": "ignored"
    }
    spam = postmark_bounce(op, reader.subscriber_id, RecordType="SpamComplaint", ID=7)
    spam["Type"], spam["TypeCode"] = "SpamComplaint", 512
    answer = op.client.post("/webhooks/postmark", json=spam, headers=auth)
    assert answer.json()["outcomes"] == {"unsubscribed": 1}
    assert op.status(reader.email) is SubscriberStatus.UNSUBSCRIBED


# Mailgun


def mailgun_complaint(
    reader_message_id: str, event_id: str = "ncV2XwymRUKbPek"
) -> dict[str, object]:
    return {
        "event": "complained",
        "id": event_id,
        "timestamp": 1795856400.5,
        "recipient": "reader@example.org",
        "message": {"headers": {"message-id": reader_message_id.strip("<>")}},
    }


def test_mailgun_signed_complaint_then_its_replay_is_refused(op: OperatorServer) -> None:
    reader = sent_reader(op)
    body = mailgun_body(mailgun_complaint(reader.message_id), op.clock(), "tok" * 16)
    answer = op.client.post("/webhooks/mailgun", content=body)
    assert answer.json() == {"status": "ok", "outcomes": {"unsubscribed": 1}}
    assert op.status(reader.email) is SubscriberStatus.UNSUBSCRIBED
    after = op.snapshot()
    replay = op.client.post("/webhooks/mailgun", content=body)
    assert replay.status_code == 406 and replay.json() == {"status": "duplicate"}
    assert op.snapshot() == after


def test_mailgun_forged_or_stale_signatures_change_nothing(op: OperatorServer) -> None:
    reader = sent_reader(op)
    event = mailgun_complaint(reader.message_id)
    now = op.clock()
    good = json.loads(mailgun_body(event, now, "a" * 50))
    bodies = {
        "wrong key": (mailgun_body(event, now, "b" * 50, key="key-someone-else"), 403),
        "stale": (mailgun_body(event, now - timedelta(minutes=16), "c" * 50), 406),
        "future": (mailgun_body(event, now + timedelta(minutes=16), "d" * 50), 406),
        "token swapped": (
            json.dumps({**good, "signature": {**good["signature"], "token": "e" * 50}}),
            403,
        ),
        "timestamp swapped": (
            json.dumps({**good, "signature": {**good["signature"], "timestamp": "1795856401"}}),
            403,
        ),
        "no signature": (json.dumps({"event-data": event}), 400),
    }
    before = op.snapshot()
    for name, (body, status) in bodies.items():
        answer = op.client.post("/webhooks/mailgun", content=body)
        assert answer.status_code == status, (name, answer.text)
    assert op.snapshot() == before


def test_a_spent_mailgun_token_cannot_carry_another_event(op: OperatorServer) -> None:
    """Mailgun signs timestamp and token only: a captured request replayed with other event
    data must fail on the token, which the genuine request spent."""
    reader, other = sent_reader(op), sent_reader(op, "other@example.org", 2)
    token = "f" * 50
    genuine = mailgun_body({"event": "delivered", "id": "d1"}, op.clock(), token)
    assert op.client.post("/webhooks/mailgun", content=genuine).json() == {"status": "ignored"}
    del reader
    swapped = json.loads(genuine)
    swapped["event-data"] = mailgun_complaint(other.message_id)
    before = op.snapshot()
    answer = op.client.post("/webhooks/mailgun", content=json.dumps(swapped))
    assert answer.status_code == 406
    assert op.snapshot() == before
    assert op.status(other.email) is SubscriberStatus.ACTIVE


def test_mailgun_without_a_key_has_no_endpoint(tmp_path: Path, servers: Servers) -> None:
    config = WebhooksConfig(ses_topic_arns=(TOPIC,))
    with OperatorServer(tmp_path, servers, webhooks=config) as op:
        before = op.snapshot()
        body = mailgun_body(mailgun_complaint("<a@b>"), op.clock(), "t" * 50, key="")
        for provider in ("mailgun", "postmark", "sendgrid"):
            assert op.client.post(f"/webhooks/{provider}", content=body).status_code == 404
        assert op.snapshot() == before


# SendGrid


def sendgrid_batch(op: OperatorServer, reader_message_id: str, bounced_id: int) -> bytes:
    events = [
        {"email": "a@example.org", "timestamp": 1795856400, "event": "bounce", "type": "bounce",
         "status": "5.1.1", "reason": "550 5.1.1 <a@example.org> does not exist",
         "smtp-id": reader_message_id, "sg_event_id": "ev-bounce-1"},
        {"email": "b@example.org", "timestamp": 1795856400, "event": "spamreport",
         "sg_event_id": "ev-spam-1", "ree": op.verp(bounced_id)},
        {"email": "c@example.org", "timestamp": 1795856400, "event": "deferred",
         "sg_event_id": "ev-deferred-1", "response": "try later"},
        {"email": "d@example.org", "timestamp": 1795856400, "event": "delivered",
         "sg_event_id": "ev-delivered-1"},
    ]  # fmt: skip
    return json.dumps(events).encode()


def test_sendgrid_signed_batch_and_its_retry(op: OperatorServer) -> None:
    first, second = sent_reader(op, "a@example.org", 1), sent_reader(op, "b@example.org", 2)
    body = sendgrid_batch(op, first.message_id, second.subscriber_id)
    headers = sendgrid_headers(body, op.clock())
    answer = op.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.json() == {"status": "ok", "outcomes": {"bounced": 1, "unsubscribed": 1}}
    assert op.status(first.email) is SubscriberStatus.BOUNCED
    assert op.status(second.email) is SubscriberStatus.UNSUBSCRIBED
    after = op.snapshot()
    retry = op.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert retry.json()["outcomes"] == {"duplicate": 2}
    assert op.snapshot() == after


def routine_events(count: int, size: int = 0) -> list[dict[str, Any]]:
    """Events SendGrid sends by the thousand and we record nothing of (delivered, opened),
    each padded by `size` bytes of user agent: what makes a batch large."""
    return [
        {"email": f"reader{n}@example.org", "timestamp": 1795856400, "event": "open",
         "sg_event_id": f"ev-open-{n:07d}", "sg_message_id": f"sg-{n:07d}.filter0001",
         "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) " + "x" * size,
         "ip": "198.51.100.7"}
        for n in range(count)
    ]  # fmt: skip


def test_a_sendgrid_batch_of_several_hundred_kb_is_taken(op: OperatorServer) -> None:
    """SendGrid batches its events, several hundred KB at a time: the app-wide 64 KB is for
    forms, and a batch refused with 413 would be retried until SendGrid gave up on it."""
    first, second = sent_reader(op, "a@example.org", 1), sent_reader(op, "b@example.org", 2)
    ours = json.loads(sendgrid_batch(op, first.message_id, second.subscriber_id))
    elsewhere = [
        {"email": f"gone{n}@example.net", "timestamp": 1795856400, "event": "bounce",
         "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 user unknown",
         "smtp-id": f"<{n}.other@mail.example.net>", "sg_event_id": f"ev-elsewhere-{n}"}
        for n in range(150)
    ]  # fmt: skip
    body = json.dumps(ours + elsewhere + routine_events(2500)).encode()
    assert 300 * 1024 < len(body) < SENDGRID_BODY_LIMIT
    headers = sendgrid_headers(body, op.clock())
    answer = op.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200, answer.text[:500]
    outcomes = {"bounced": 1, "unsubscribed": 1, "unmatched": 150}
    assert answer.json() == {"status": "ok", "outcomes": outcomes}
    assert op.status(first.email) is SubscriberStatus.BOUNCED
    assert op.status(second.email) is SubscriberStatus.UNSUBSCRIBED
    assert len(event_rows(op)) == 152
    after = op.snapshot()
    retry = op.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert retry.json()["outcomes"] == {"duplicate": 152}
    assert op.snapshot() == after


def test_large_webhook_bodies_within_their_route_limit_reach_the_handler(
    op: OperatorServer,
) -> None:
    """Over 64 KB but within the route's own limit: answered by the provider's handler (here,
    refusing it for what it is, not for its size)."""
    expected = {"ses": 400, "postmark": 401, "mailgun": 400, "sendgrid": 403}
    for provider, status in expected.items():
        answer = op.client.post(f"/webhooks/{provider}", content=b" " * 100_000)
        assert answer.status_code == status, (provider, answer.status_code)


def oversized(op: OperatorServer, reader: Reader, provider: str, limit: int) -> Any:
    """A genuine request that would change `reader` if it were taken, padded past `limit`:
    (body, headers)."""
    pad = "x" * limit
    if provider == "ses":
        complaint = ses_complaint(reader, padding=pad)
        message = ses_notification(complaint, op.clock())
        sent = {"x-amz-sns-message-type": "Notification",
                "x-amz-sns-message-id": message["MessageId"]}  # fmt: skip
        return json.dumps(message).encode(), sent
    if provider == "postmark":
        bounce = postmark_bounce(op, reader.subscriber_id, Description=pad)
        return json.dumps(bounce).encode(), basic("postmark", POSTMARK_PASSWORD)
    if provider == "mailgun":
        event = {**mailgun_complaint(reader.message_id), "padding": pad}
        return mailgun_body(event, op.clock(), "big" * 16).encode(), {}
    events = [{"email": reader.email, "timestamp": 1795856400, "event": "spamreport",
               "sg_event_id": "ev-spam-big", "smtp-id": reader.message_id}]  # fmt: skip
    body = json.dumps(events + routine_events(limit // 4000, 4000)).encode()
    return body, sendgrid_headers(body, op.clock())


def test_webhook_bodies_over_their_route_limit_are_413_and_change_nothing(
    op: OperatorServer,
) -> None:
    """The route's own limit holds, declared (Content-Length) or not (chunked): 413, our page
    with the security headers, and nothing written."""
    reader = sent_reader(op)
    before = op.snapshot()
    for provider, limit in {**BODY_LIMITS, "sendgrid": SENDGRID_BODY_LIMIT}.items():
        body, headers = oversized(op, reader, provider, limit)
        assert limit < len(body) < 2 * limit, provider
        declared = op.client.post(f"/webhooks/{provider}", content=body, headers=headers)
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        chunked = op.client.post(f"/webhooks/{provider}", content=iter(chunks), headers=headers)
        for answer in (declared, chunked):
            assert answer.status_code == 413, (provider, answer.status_code, answer.text[:200])
            assert f"larger than {limit // 1024} KB" in answer.text, provider
            assert all(answer.headers.get(name) for name in SECURITY), provider
    assert op.snapshot() == before
    assert op.status(reader.email) is SubscriberStatus.ACTIVE


def test_sendgrid_forged_requests_change_nothing(op: OperatorServer) -> None:
    first, second = sent_reader(op, "a@example.org", 1), sent_reader(op, "b@example.org", 2)
    body = sendgrid_batch(op, first.message_id, second.subscriber_id)
    now = op.clock()
    good = sendgrid_headers(body, now)
    other_key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "body changed": (body.replace(b"5.1.1", b"5.1.2"), good),
        "timestamp changed": (body, {**good, "X-Twilio-Email-Event-Webhook-Timestamp": "1"}),
        "someone else's key": (body, sendgrid_headers(body, now, other_key)),
        "no signature": (body, {"Content-Type": "application/json"}),
        "stale": (body, sendgrid_headers(body, now - timedelta(minutes=20))),
        "garbage signature": (body, {**good, "X-Twilio-Email-Event-Webhook-Signature": "%%"}),
    }
    before = op.snapshot()
    for name, (content, headers) in cases.items():
        answer = op.client.post("/webhooks/sendgrid", content=content, headers=headers)
        assert answer.status_code == 403, (name, answer.text)
    assert op.snapshot() == before
    assert op.status(first.email) is SubscriberStatus.ACTIVE


def test_webhooks_answer_post_only(op: OperatorServer) -> None:
    for provider in ("ses", "postmark", "mailgun", "sendgrid"):
        assert op.client.get(f"/webhooks/{provider}").status_code == 405
