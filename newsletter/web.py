"""The subscription web app: sign-up form, confirm and unsubscribe links, archive, health.

`create_app` builds a self-contained Starlette app from what it is handed (settings, store,
transport, clock) and keeps no global state, so `newsletter serve` runs it under uvicorn and the
scheduler can mount the same app in its own process. Store calls are blocking and go through
Starlette's threadpool; the event loop only renders pages and talks SMTP.

Routes (all links are built from `base_url`, so a proxy may serve the app under a path prefix):

    GET  /  and  /subscribe       sign-up form          POST /subscribe      sign up
    GET  /embed                   form for an iframe    GET  /embed/snippet  form as HTML to paste
    GET  /confirm/{token}         page with a button    POST /confirm/{token}  confirm
    POST /confirm/{token}/renew   new confirmation mail for an expired or used link
    GET  /u/{token}               page with a button    POST /u/{token}      unsubscribe (one-click)
    GET  /unsubscribe             how to unsubscribe (the archive's neutral link)
    GET  /archive                 past issues           GET  /archive/{YYYY-MM-DD}  one issue
    GET  /healthz                 200 if the store answers, else 503
"""

from __future__ import annotations

from datetime import timedelta

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import web_archive, web_forms, web_links
from .config import SECRET_ENV, Settings
from .errors import ConfigError
from .ports import Transport
from .ratelimit import SlidingWindowLimiter
from .subscriptions import Clock, Subscriptions, utc_now
from .web_context import BackgroundJobs, Pages, WebContext, WebStore

__all__ = ["WebStore", "create_app"]
MAX_BODY_BYTES = 64 * 1024  # a sign-up form is a few hundred bytes


def create_app(
    settings: Settings, store: WebStore, transport: Transport, clock: Clock = utc_now
) -> Starlette:
    """The app, or ConfigError when links would be signed with the public dry-run key."""
    if not settings.secret_key_is_set:
        raise ConfigError(SECRET_ENV, "(environment)", "must be set: it signs the links we mail")
    ctx = WebContext(
        settings=settings,
        store=store,
        service=Subscriptions(settings, store, transport, clock),
        pages=Pages(settings),
        limiter=SlidingWindowLimiter(settings.web.ip_limit_per_hour, timedelta(hours=1)),
        jobs=BackgroundJobs(),
        clock=clock,
    )
    routes = [*web_forms.routes(ctx), *web_links.routes(ctx), *web_archive.routes(ctx)]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        page = "not_found.html" if status in (404, 405) else "error.html"
        return ctx.pages.response(page, status, code=status)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, csp=ctx.csp())],
        exception_handlers={HTTPException: http_error, 500: http_error},
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.jobs = ctx.jobs
    return app


class SecurityHeaders:
    """Defaults every response gets unless its route chose otherwise.

    `Referrer-Policy: no-referrer` matters most: confirm and unsubscribe URLs carry tokens, and
    a link followed from those pages must not hand the token to another site in a Referer.
    Pages are `no-store` by default for the same reason (archive pages opt in to caching).
    """

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.defaults = {
            "Content-Security-Policy": csp,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
