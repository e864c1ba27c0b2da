"""Amazon SES notifications through an SNS HTTPS subscription.

Authentication as AWS documents it: the message is signed (SignatureVersion 1: SHA1withRSA,
2: SHA256withRSA) over the JSON-decoded fields in byte order, each "Name\\nvalue\\n"; the
certificate comes from `SigningCertURL`, which must be https on an `sns.<region>.amazonaws.com`
host (no other amazonaws.com host: an S3 bucket could serve anyone's certificate), ending in
.pem, without user, port, query or fragment; certificates are cached by URL. On top: the topic
must be one of `[webhooks] ses_topic_arns` (a valid signature only proves the message came
from *some* SNS topic), the headers must agree with the body, and the message must be younger
than `ses_max_age_minutes`.

A SubscriptionConfirmation for an allowed topic is confirmed by fetching its SubscribeURL
(same host rule); its once-only key is recorded only after that fetch answered 200. A fetch
that fails (an error status, a timeout, a refused connection) is answered 502, which SNS
retries, and the retry fetches again: recorded first, the key would make every retry a
"duplicate" and the subscription would never be confirmed. SES's own "Successfully validated"
text notification is ignored. Retries reuse the SNS MessageId: it is the request's
idempotency key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.signals.providers import iso_time, ses_signals
from newsletter.web.webhooks.base import (
    Refused,
    WebhookContext,
    count,
    log,
    parse_json,
    refused,
    take,
)

PROVIDER = "ses"
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
CERT_MAX_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0
CLOCK_SKEW = timedelta(minutes=5)
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip
ALGORITHMS = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_url_ok(url: str, *, pem: bool) -> bool:
    """An https URL on an SNS host (and for certificates, a .pem path), nothing else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname is not None
        and SNS_HOST.fullmatch(parts.hostname) is not None
        and port in (None, 443)
        and parts.username is None
        and parts.password is None
        and not parts.fragment
        and (not pem or (parts.path.endswith(".pem") and not parts.query))
    )


def string_to_sign(message: Mapping[str, str]) -> bytes:
    fields = SIGNED_FIELDS[message["Type"]]
    return "".join(f"{k}\n{message[k]}\n" for k in fields if k in message).encode("utf-8")


def https_get(url: str) -> bytes:
    """GET over verified TLS, no redirects, bounded in time and size."""
    with (
        httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:  # the host is SNS's (checked before): a passing fault
            raise Refused(502, f"{url} answered {response.status_code}")
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > CERT_MAX_BYTES:
                raise Refused(403, f"{url} is larger than {CERT_MAX_BYTES} bytes")
        return body


class SnsCertificates:
    """Signing certificates by URL, fetched once each (thread-safe; the store runs in threads)."""

    def __init__(self) -> None:
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def key(self, url: str, ctx: WebhookContext) -> rsa.RSAPublicKey:
        with self._lock:
            known = self._keys.get(url)
        if known is not None:
            return known
        if not sns_url_ok(url, pem=True):
            raise Refused(403, "SigningCertURL is not an SNS certificate URL")
        try:
            certificate = x509.load_pem_x509_certificate(ctx.fetch(url))
        except httpx.HTTPError as exc:  # SNS's host did not answer: 502, so that SNS retries
            raise Refused(502, f"cannot fetch the signing certificate: {exc}") from None
        except ValueError as exc:
            raise Refused(403, f"cannot read the signing certificate: {exc}") from None
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise Refused(403, "the signing certificate has no RSA key")
        with self._lock:
            self._keys[url] = public
        return public


class Confirmations:
    """MessageIds of the SubscriptionConfirmations this process confirmed (thread-safe).

    A retry of a confirmation already fetched must not fetch again, so it is looked up before
    the fetch; the store's once-only key cannot serve for that, as it is recorded only after a
    successful fetch and the store has no way to read a key without recording it. A retry
    that reaches another worker fetches once more and then finds the key taken: confirming
    a subscription twice is harmless, never confirming it is not. Only genuine, signed
    confirmations of our own topics get here, a handful in a topic's life.
    """

    def __init__(self) -> None:
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def done(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._done

    def add(self, message_id: str) -> None:
        with self._lock:
            self._done.add(message_id)


def check_message(
    raw: object, request: Request, ctx: WebhookContext, certificates: SnsCertificates
) -> dict[str, str]:
    """The SNS message, once every check passed; Refused otherwise (cheapest checks first)."""
    if not isinstance(raw, dict):
        raise Refused(400, "expected a JSON object", "bad-request")
    kind = raw.get("Type")
    if kind not in SIGNED_FIELDS:
        raise Refused(400, "unknown SNS message type", "bad-request")
    required = [name for name in SIGNED_FIELDS[kind] if name != "Subject"]
    required += ["SignatureVersion", "Signature", "SigningCertURL"]
    if not all(isinstance(raw.get(name), str) for name in required):
        raise Refused(400, "SNS fields missing", "bad-request")
    if "Subject" in raw and not isinstance(raw["Subject"], str):
        raise Refused(400, "SNS Subject is not a string", "bad-request")
    message: dict[str, str] = {k: v for k, v in raw.items() if isinstance(v, str)}
    if (
        request.headers.get("x-amz-sns-message-type") != kind
        or request.headers.get("x-amz-sns-message-id") != message["MessageId"]
    ):
        raise Refused(403, "the SNS headers do not match the message")
    if message["TopicArn"] not in ctx.settings.webhooks.ses_topic_arns:
        raise Refused(403, "not one of our SNS topics")
    algorithm = ALGORITHMS.get(message["SignatureVersion"])
    if algorithm is None:
        raise Refused(403, "unknown SNS SignatureVersion")
    sent = iso_time(message["Timestamp"])
    now = ctx.clock()
    max_age = timedelta(minutes=ctx.settings.webhooks.ses_max_age_minutes)
    if sent is None or sent < now - max_age or sent > now + CLOCK_SKEW:
        raise Refused(403, "the SNS message is too old (or from the future)", "stale")
    key = certificates.key(message["SigningCertURL"], ctx)
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused(403, "the SNS signature does not verify") from None
    return message


def route_handler(ctx: WebhookContext) -> Any:
    certificates = SnsCertificates()
    confirmations = Confirmations()

    async def ses(request: Request) -> Response:
        try:
            raw = parse_json(await request.body())  # SNS says text/plain: never trusted anyway
            message = await run_in_threadpool(check_message, raw, request, ctx, certificates)
            return await _handle(ctx, message, confirmations)
        except Refused as error:
            return refused(ctx, PROVIDER, request, error)

    return ses


async def _handle(
    ctx: WebhookContext, message: dict[str, str], confirmations: Confirmations
) -> Response:
    kind, message_id = message["Type"], message["MessageId"]
    if kind == "SubscriptionConfirmation":
        url = message["SubscribeURL"]
        if not sns_url_ok(url, pem=False):
            raise Refused(403, "SubscribeURL is not on an SNS host")
        if not confirmations.done(message_id):
            await run_in_threadpool(_confirm, ctx, url, message["TopicArn"])
            confirmations.add(message_id)
            taken = await run_in_threadpool(ctx.desk.take, PROVIDER, f"sub:{message_id}", [])
            if not taken.duplicate:
                log.info("ses webhook: confirmed the subscription to %s", message["TopicArn"])
        count(ctx, PROVIDER, "subscribed")
        return JSONResponse({"status": "subscribed"})
    if kind == "UnsubscribeConfirmation":
        log.warning("ses webhook: %s unsubscribed this endpoint", message["TopicArn"])
        count(ctx, PROVIDER, "ignored")
        return JSONResponse({"status": "ignored"})
    try:
        notification = json.loads(message["Message"])
    except ValueError:
        notification = None  # "Successfully validated SNS topic for Amazon SES ..."
    if not isinstance(notification, dict):
        count(ctx, PROVIDER, "ignored")
        return JSONResponse({"status": "ignored"})
    signals = ses_signals(message_id, notification)
    return await take(ctx, PROVIDER, message_id if signals else None, signals)


def _confirm(ctx: WebhookContext, url: str, topic: str) -> None:
    """Fetch the SubscribeURL; Refused 502 if it answered anything but 200 or could not be
    reached, so that SNS sends the confirmation again (SNS retries a 5xx, never a 4xx; an
    exception let through would be logged as a bug). The detail goes to our log, the
    client gets a fixed reason."""
    try:
        ctx.fetch(url)
    except (Refused, httpx.HTTPError) as exc:
        log.warning("ses webhook: could not confirm the subscription to %s: %s", topic, exc)
        raise Refused(502, "the subscription could not be confirmed yet", "unconfirmed") from None
