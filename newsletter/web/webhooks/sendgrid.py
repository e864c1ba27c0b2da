"""SendGrid's signed Event Webhook.

Authentication as SendGrid documents it: an ECDSA (P-256) signature, base64 ASN.1 DER, in
`X-Twilio-Email-Event-Webhook-Signature`, over the `...-Timestamp` header's bytes followed by
the raw body bytes, hashed with SHA-256, under the account's verification key (base64 DER
SubjectPublicKeyInfo, from NEWSLETTER_SENDGRID_PUBLIC_KEY). SendGrid documents no freshness
window: a numeric timestamp older than `sendgrid_max_age_minutes` is refused, others only
need the signature. A batch is an array of events; each `sg_event_id` is recorded once, so a
retried batch changes nothing.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import ConfigError
from newsletter.signals.providers import sendgrid_signals, unix_time
from newsletter.web.webhooks.base import Refused, WebhookContext, parse_json, refused, take

PROVIDER = "sendgrid"
SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


def load_key(encoded: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(
            "NEWSLETTER_SENDGRID_PUBLIC_KEY", "(environment)", "expected SendGrid's base64 key"
        )
    return key


def check_signature(
    request: Request, body: bytes, key: ec.EllipticCurvePublicKey, ctx: WebhookContext
) -> None:
    given, timestamp = request.headers.get(SIGNATURE, ""), request.headers.get(TIMESTAMP, "")
    if not given or not timestamp:
        raise Refused(403, "the SendGrid signature headers are missing")
    try:
        signature = base64.b64decode(given, validate=True)
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused(403, "the SendGrid signature does not verify") from None
    signed_at = unix_time(timestamp) if timestamp.isdigit() else None
    window = timedelta(minutes=ctx.settings.webhooks.sendgrid_max_age_minutes)
    if signed_at is not None and abs(ctx.clock() - signed_at) > window:
        raise Refused(403, "the SendGrid signature is too old", "stale")


def route_handler(ctx: WebhookContext) -> Any:
    key = load_key(ctx.settings.webhooks.sendgrid_public_key)

    async def sendgrid(request: Request) -> Response:
        try:
            body = await request.body()
            check_signature(request, body, key, ctx)
            events = parse_json(body)
            if not isinstance(events, list):
                raise Refused(400, "expected a JSON array of events", "bad-request")
            return await take(ctx, PROVIDER, None, sendgrid_signals(events))
        except Refused as error:
            return refused(ctx, PROVIDER, request, error)

    return sendgrid
