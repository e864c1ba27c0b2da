"""Mailgun webhooks (the JSON "v3" kind: {"signature": {...}, "event-data": {...}}).

Authentication as Mailgun documents it: HMAC-SHA256 under the HTTP webhook signing key over
timestamp + token, as lower-case hex, compared in constant time; the timestamp may be at most
`mailgun_max_age_minutes` off; a token is honoured once (Mailgun's retries carry a fresh
signature, so a token seen again is a replay). Replays and stale signatures get 406, which
tells Mailgun not to retry.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from newsletter.signals.providers import mailgun_signals, unix_time
from newsletter.web.webhooks.base import Refused, WebhookContext, parse_json, refused, take

PROVIDER = "mailgun"


def check_signature(payload: object, key: str, ctx: WebhookContext) -> tuple[str, dict[str, Any]]:
    """(token, event data) of a genuine, fresh request; Refused otherwise."""
    if not isinstance(payload, dict):
        raise Refused(400, "expected a JSON object", "bad-request")
    signature = payload.get("signature")
    event = payload.get("event-data")
    if not isinstance(signature, dict) or not isinstance(event, dict):
        raise Refused(400, "signature or event-data missing", "bad-request")
    timestamp, token = signature.get("timestamp"), signature.get("token")
    given = signature.get("signature")
    if not all(isinstance(value, str) and value for value in (timestamp, token, given)):
        raise Refused(403, "signature fields missing")
    assert isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise Refused(403, "the Mailgun signature does not verify")
    signed_at = unix_time(timestamp)
    window = timedelta(minutes=ctx.settings.webhooks.mailgun_max_age_minutes)
    if signed_at is None or abs(ctx.clock() - signed_at) > window:
        raise Refused(406, "the Mailgun signature is too old", "stale")
    return token, event


def route_handler(ctx: WebhookContext) -> Any:
    key = ctx.settings.webhooks.mailgun_signing_key

    async def mailgun(request: Request) -> Response:
        try:
            token, event = check_signature(parse_json(await request.body()), key, ctx)
            return await take(
                ctx, PROVIDER, f"token:{token}", mailgun_signals(event), duplicate_status=406
            )
        except Refused as error:
            return refused(ctx, PROVIDER, request, error)

    return mailgun
