"""Postmark bounce, spam-complaint and subscription-change webhooks.

Postmark signs nothing: its documented protection is HTTP basic auth in the webhook URL
(`https://postmark:<password>@host/.../webhooks/postmark`), compared here in constant time.
Each event is one JSON object; its `ID` (or a hash of a subscription change) keys it, so a
retry or a replay is recorded once. The reader is found through `Metadata` values (set with
`X-PM-Metadata-*` headers): Postmark's `MessageID` is its own, not ours.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from newsletter.signals.providers import postmark_signals
from newsletter.web.webhooks.base import Refused, WebhookContext, parse_json, refused, take

PROVIDER = "postmark"


def check_basic_auth(request: Request, username: str, password: str) -> None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        given = b""
    user, _, secret = given.partition(b":")
    good_user = hmac.compare_digest(user, username.encode())
    good_secret = hmac.compare_digest(secret, password.encode())
    if scheme.lower() != "basic" or not (good_user and good_secret):
        raise Refused(401, "basic auth required")


def route_handler(ctx: WebhookContext) -> Any:
    config = ctx.settings.webhooks

    async def postmark(request: Request) -> Response:
        try:
            check_basic_auth(request, config.postmark_username, config.postmark_password)
            payload = parse_json(await request.body())
            if not isinstance(payload, dict):
                raise Refused(400, "expected a JSON object", "bad-request")
            return await take(ctx, PROVIDER, None, postmark_signals(payload))
        except Refused as error:
            return refused(ctx, PROVIDER, request, error)

    return postmark
