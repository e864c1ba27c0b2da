"""Provider webhooks for bounces and complaints: POST /webhooks/{ses,postmark,mailgun,sendgrid}.

Only the providers configured in `[webhooks]` get a route; the others answer 404 like any
unknown path. `routes` is what `web.operator` registers on the app. Each route declares its
own body limit, which replaces the app's 64 KB for it (`web.app.body_limit`): a provider
retries a 413 until it gives up, and the reports in that body would be lost.
"""

from __future__ import annotations

from starlette.routing import Route

from newsletter.web.webhooks import mailgun, postmark, sendgrid, ses
from newsletter.web.webhooks.base import WebhookContext

# One SendGrid batch may be several hundred KB; other providers post one event at a time.
BODY_LIMITS = {"ses": 256 * 1024, "postmark": 256 * 1024, "mailgun": 256 * 1024}
SENDGRID_BODY_LIMIT = 4 * 1024 * 1024
HANDLERS = {
    "ses": ses.route_handler,
    "postmark": postmark.route_handler,
    "mailgun": mailgun.route_handler,
    "sendgrid": sendgrid.route_handler,
}


def routes(ctx: WebhookContext) -> list[Route]:
    found = []
    for provider in ctx.settings.webhooks.enabled:
        limit = BODY_LIMITS.get(provider, SENDGRID_BODY_LIMIT)
        handler = HANDLERS[provider](ctx)
        found.append(Route(f"/webhooks/{provider}", handler, methods=["POST"], max_body_size=limit))
    return found


__all__ = ["WebhookContext", "routes"]
