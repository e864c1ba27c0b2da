"""The operator's side of the web harness: webhooks, /admin and metrics switched on, keys and
certificates made by the test, signed provider requests, and a reader who was sent an issue.

`OperatorServer` is `WebServer` with `[webhooks]`, `[admin]` and `[metrics]` set (and, with
`database_url`, on that database: the `store_url` fixture's SQLite or PostgreSQL); SNS
certificates are served by `certificates` (the app's outbound fetch, handed in: no test
reaches Amazon), which counts every fetch and can send a SubscribeURL to a local server.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.bounces import Verp
from newsletter.config import Settings
from newsletter.config.operator import AdminConfig, MetricsConfig, WebhooksConfig
from newsletter.models import DeliveryStatus, Outcome, SubscriberStatus
from newsletter.web.admin.passwords import hash_password
from newsletter.web.operator import operator_of
from newsletter.web.webhooks.ses import https_get, string_to_sign
from tests.support.clock import T0
from tests.support.web import SECRET, Servers, WebServer, store_issue

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ree-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
POSTMARK_PASSWORD = "postmark-webhook-secret"
MAILGUN_KEY = "key-mailgun-signing-2026"
ADMIN_PASSWORD = "correct horse battery staple"
ADMIN_HASH = hash_password(ADMIN_PASSWORD, log2_n=4)  # cheap for tests; the format is the same
ISSUE_DAY = date(2026, 11, 27)


class Keys:
    """An SNS signing certificate and a SendGrid key pair, made fresh for the test session."""

    def __init__(self) -> None:
        self.sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.sns_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.sns_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(T0 - timedelta(days=1))
            .not_valid_after(T0 + timedelta(days=3650))
            .sign(self.sns_key, hashes.SHA256())
        )
        self.sendgrid_key = ec.generate_private_key(ec.SECP256R1())
        public = self.sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.sendgrid_public = base64.b64encode(public).decode()

    @property
    def sns_pem(self) -> bytes:
        return self.sns_cert.public_bytes(serialization.Encoding.PEM)


KEYS = Keys()


class Certificates:
    """The app's outbound fetch: serves our SNS certificate, records every URL fetched.

    A SubscribeURL is answered here, or, with `confirm_at` set, by the app's own `https_get`
    of that local URL instead: a test's server on 127.0.0.1 then answers the confirmation with
    real status codes, and a closed port refuses it for real. `cert_at` does the same for the
    signing certificate.
    """

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.confirm_at: str | None = None
        self.cert_at: str | None = None

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        if url.endswith(".pem"):
            return KEYS.sns_pem if self.cert_at is None else https_get(self.cert_at)
        if self.confirm_at is not None:
            return https_get(self.confirm_at)
        return b"<ConfirmSubscriptionResponse/>"


class OperatorServer(WebServer):
    def __init__(
        self, tmp_path: Path, servers: Servers, database_url: str | None = None, **options: Any
    ) -> None:
        self.operator_options: dict[str, Any] = {
            key: options.pop(key) for key in ("webhooks", "admin", "metrics") if key in options
        }
        self.database_url = database_url
        super().__init__(tmp_path, servers, **options)
        self.certificates = Certificates()

    def _settings(self) -> Settings:
        settings = super()._settings()
        defaults: dict[str, object] = {
            "webhooks": WebhooksConfig(
                ses_topic_arns=(TOPIC,),
                postmark_password=POSTMARK_PASSWORD,
                mailgun_signing_key=MAILGUN_KEY,
                sendgrid_public_key=KEYS.sendgrid_public,
            ),
            "admin": AdminConfig(password_hash=ADMIN_HASH, login_attempts_per_hour=5),
            "metrics": MetricsConfig(enabled=True),
        }
        chosen: dict[str, Any] = {**defaults, **self.operator_options}
        delivery = dataclasses.replace(settings.delivery, verp_domain="bounce.example.com")
        database = self.database_url or settings.database_url
        return dataclasses.replace(settings, delivery=delivery, database_url=database, **chosen)

    def __enter__(self) -> OperatorServer:
        super().__enter__()
        operator = operator_of(self.app)
        assert operator is not None
        operator.fetch = self.certificates
        return self

    def verp(self, subscriber_id: int) -> str:
        return Verp(self.settings.secret_keys, "bounce.example.com").address(subscriber_id)


@dataclass(frozen=True)
class Reader:
    subscriber_id: int
    issue_id: int
    message_id: str
    email: str


def sent_reader(web: WebServer, email: str = "reader@example.org", n: int = 1) -> Reader:
    """An active reader who was sent the issue of ISSUE_DAY, with its Message-ID in the ledger."""
    subscriber = web.store.add_subscriber(
        email, status=SubscriberStatus.ACTIVE, source="test", now=T0 - timedelta(days=30)
    )
    issue = web.store.get_issue(web.settings.name, ISSUE_DAY)
    if issue is None:
        store_issue(web, ISSUE_DAY, render=False)
        issue = web.store.get_issue(web.settings.name, ISSUE_DAY)
    assert issue is not None
    message_id = f"<20261127.1a2b3c4d.{subscriber.id}.{n:012x}@ree-news.example.com>"
    outcome = Outcome(DeliveryStatus.SENT, "250 2.0.0 Ok", message_id)
    web.store.record_outcome(issue.id, subscriber.id, outcome, T0 - timedelta(hours=2))
    return Reader(subscriber.id, issue.id, message_id, email)


# Amazon SES through SNS


def sns_message(
    kind: str, fields: dict[str, str], at: datetime, version: str = "1", message_id: str = ""
) -> dict[str, str]:
    message = {
        "Type": kind,
        "MessageId": message_id or f"sns-{hashlib.sha1(repr(fields).encode()).hexdigest()[:16]}",
        "TopicArn": TOPIC,
        "Timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        **fields,
    }
    return sign_sns(message)


def sign_sns(message: dict[str, str]) -> dict[str, str]:
    algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    signature = KEYS.sns_key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def ses_notification(event: dict[str, Any], at: datetime, **options: Any) -> dict[str, str]:
    body = json.dumps(event)
    return sns_message("Notification", {"Message": body, "Subject": "SES"}, at, **options)


def ses_complaint(reader: Reader, *, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    headers = [{"name": "Message-ID", "value": message_id or reader.message_id}]
    return {
        "notificationType": "Complaint",
        "mail": {"source": "daily@ree-news.example.com", "headers": headers, **extra},
        "complaint": {
            "complainedRecipients": [{"emailAddress": reader.email}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-11-28T08:30:00.000Z",
        },
    }


def post_sns(web: WebServer, message: dict[str, str], **headers: str) -> httpx.Response:
    sent = {
        "x-amz-sns-message-type": message.get("Type", ""),
        "x-amz-sns-message-id": message.get("MessageId", ""),
        "content-type": "text/plain; charset=UTF-8",
        **headers,
    }
    return web.client.post("/webhooks/ses", content=json.dumps(message), headers=sent)


# Mailgun


def mailgun_body(event: dict[str, Any], at: datetime, token: str, key: str = MAILGUN_KEY) -> str:
    timestamp = str(int(at.timestamp()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
    )


# SendGrid


def sendgrid_headers(
    body: bytes, at: datetime, key: ec.EllipticCurvePrivateKey | None = None
) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    signer = key or KEYS.sendgrid_key
    signature = signer.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


__all__ = ["SECRET"]
