"""What every provider's webhook shares: the raw body, JSON, the desk, answers and their count.

Answers: 200 when the request was taken (also when it was a provider's retry of one already
taken: the provider must stop retrying), 400 for a body we cannot read, 401/403 for a request
that fails the provider's authentication, 406 for a Mailgun replay or stale signature (Mailgun
does not retry a 406), 413 for a body over the route's limit (`webhooks.BODY_LIMITS`), 502 for
an SNS subscription whose SubscribeURL could not be fetched (SNS retries a 5xx, never a 4xx).
A refused request changes nothing: nothing is written before it passes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.signals import Signal, SignalDesk
from newsletter.web.metrics import Metrics

log = logging.getLogger("newsletter.webhooks")
Fetch = Callable[[str], bytes]


@dataclass
class WebhookContext:
    settings: Settings
    desk: SignalDesk
    clock: Clock
    metrics: Metrics | None
    fetch: Fetch  # outbound HTTPS GET (SNS certificates and subscription confirmations)


class Refused(Exception):
    """A request we will not take; `status` and a short reason (logged, not echoed in detail)."""

    def __init__(self, status: int, reason: str, result: str = "refused") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.result = result


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the body is not JSON", "bad-request") from None


def count(ctx: WebhookContext, provider: str, result: str) -> None:
    if ctx.metrics is not None:
        ctx.metrics.webhooks.labels(provider=provider, result=result).inc()


def refused(ctx: WebhookContext, provider: str, request: Request, error: Refused) -> Response:
    client = request.client.host if request.client else "?"
    log.warning("%s webhook refused (%s) from %s: %s", provider, error.status, client, error)
    count(ctx, provider, error.result)
    headers = {"WWW-Authenticate": 'Basic realm="webhooks"'} if error.status == 401 else None
    return JSONResponse({"status": "refused", "reason": error.reason}, error.status, headers)


async def take(
    ctx: WebhookContext,
    provider: str,
    request_key: str | None,
    signals: Sequence[Signal],
    *,
    duplicate_status: int = 200,
) -> Response:
    """Hand the request's signals to the desk (one transaction) and say what happened."""
    if not signals and request_key is None:
        count(ctx, provider, "ignored")
        return JSONResponse({"status": "ignored"})
    taken = await run_in_threadpool(ctx.desk.take, provider, request_key, signals)
    if taken.duplicate:
        count(ctx, provider, "duplicate")
        return JSONResponse({"status": "duplicate"}, duplicate_status)
    if not signals:  # nothing to act on, but its key is now spent (a Mailgun token)
        count(ctx, provider, "ignored")
        return JSONResponse({"status": "ignored"})
    outcomes = dict(sorted(taken.outcomes.items()))
    log.info("%s webhook: %s", provider, ", ".join(f"{k}={v}" for k, v in outcomes.items()))
    count(ctx, provider, "accepted")
    return JSONResponse({"status": "ok", "outcomes": outcomes})
