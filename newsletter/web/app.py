"""The subscription web app: sign-up form, confirm and unsubscribe links, archive, health.

`create_app` builds a self-contained Starlette app from what it is handed (settings, store,
transport, clock) and keeps no global state, so `newsletter serve` runs it under uvicorn and the
scheduler can mount the same app in its own process. Store calls are blocking and go through
Starlette's threadpool; the event loop only renders pages and talks SMTP.

Routes (every absolute URL, link or redirect is built from `base_url`, never from the request's
Host header, so a proxy may serve the app under a path prefix):

    GET  /  and  /subscribe       sign-up form          POST /subscribe      sign up
    GET  /embed                   form for an iframe    GET  /embed/snippet  form as HTML to paste
    GET  /confirm/{token}         page with a button    POST /confirm/{token}  confirm
    POST /confirm/{token}/renew   new confirmation mail for an expired or used link
    GET  /u/{token}               page with a button    POST /u/{token}      unsubscribe (one-click)
    GET  /unsubscribe             how to unsubscribe (the archive's neutral link)
    GET  /archive                 past issues           GET  /archive/{YYYY-MM-DD}  one issue
    GET  /healthz                 200 if the store answers, else 503

Every answer, the 413 of the body limit and the 500 of a bug included, carries the security
headers (`SecurityHeaders` wraps the whole stack). A body may be 64 KB, except on a route that
declares its own `max_body_size` (the provider webhooks: one SendGrid batch is several hundred
KB), which gets that limit instead, declared or chunked. A path with a trailing slash is answered
with a 301 to the path without it (from `base_url`) when that is a page, a known path with the
wrong method with 405 and an `Allow` header, a form we cannot read with 400 saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.clock import Clock
from newsletter.config import Settings, WebConfig
from newsletter.ports import Signer, Transport
from newsletter.subscriptions import Subscriptions
from newsletter.web import archive as web_archive
from newsletter.web import forms as web_forms
from newsletter.web import links as web_links
from newsletter.web import preferences as web_preferences
from newsletter.web.context import Pages, WebContext, WebStore
from newsletter.web.operator import Operator
from newsletter.web.ratelimit import ClientLimit, SlidingWindowLimiter
from newsletter.web.redislimit import RedisLimiter
from newsletter.web.signups import SignupJob, SignupQueue

__all__ = ["WebStore", "create_app"]
MAX_BODY_BYTES = 64 * 1024  # a sign-up form is a few hundred bytes
_SAFE_PATH = "/-._~!$&'()*+,;=:@"  # RFC 3986 pchar and "/", kept as they are in a Location
ErrorPage = Callable[[Request, Exception], Awaitable[Response]]


def create_app(
    settings: Settings,
    store: WebStore,
    transport: Transport,
    clock: Clock,
    sign: Signer | None = None,
) -> Starlette:
    """The app, or ConfigError when links would be signed with the public dry-run key."""
    settings.require_secret_key()
    service = Subscriptions(settings, store, transport, clock, sign)
    consent_field = service.tokens.consent_version(settings.web.consent_version)

    async def work(job: SignupJob) -> None:
        await signup_job(service, job)

    web = settings.web
    ctx = WebContext(
        settings=settings,
        store=store,
        service=service,
        pages=Pages(settings, consent_field),
        limiter=client_limit(web),
        signups=SignupQueue(work),
        clock=clock,
    )
    operator = Operator(settings, store, clock)  # webhooks, /admin, metrics: off by default
    routes = [
        *web_forms.routes(ctx),
        *web_links.routes(ctx),
        *web_preferences.routes(ctx),
        *web_archive.routes(ctx),
    ]
    routes += operator.routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await ctx.signups.drain()  # answered sign-ups are done before the process ends

    app = NewsletterApp(
        ctx.security_headers(),
        partial(too_large, ctx),
        routes=routes,
        exception_handlers={HTTPException: _error_pages(ctx, routes), 500: _error_pages(ctx)},
        max_body_size=MAX_BODY_BYTES,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # Starlette builds that redirect from the Host header
    app.state.signups = ctx.signups
    operator.install(app)
    return app


def client_limit(web: WebConfig) -> ClientLimit:
    """The per-IP sign-up limit: in this process's memory, or in Redis when `[web]` names one
    (every process then shares one count; this process's memory stands in while it is down)."""
    memory = SlidingWindowLimiter(web.ip_limit_per_hour, timedelta(hours=1), web.ip_limit_clients)
    if not web.redis_url:
        return memory
    return RedisLimiter(
        web.redis_url, web.redis_prefix, web.ip_limit_per_hour, timedelta(hours=1), memory
    )


async def signup_job(service: Subscriptions, job: SignupJob) -> None:
    """One queued sign-up, the same steps for every address (see `web.signups`)."""
    if job.decoy:
        await run_in_threadpool(service.rehearse, job.request)
        mail = None
    else:
        mail = (await run_in_threadpool(service.sign_up, job.request)).mail
    await service.send(mail)


def too_large(ctx: WebContext, limit: int = MAX_BODY_BYTES) -> Response:
    """Our 413 page, naming the limit the request went over: the app's (a form's) or its
    route's own (a webhook's), so the number said is the one that refused it."""
    if limit == MAX_BODY_BYTES:
        reason = f"The request is larger than {limit // 1024} KB; a form is far smaller."
    else:
        reason = f"The request is larger than {limit // 1024} KB, the most this address takes."
    return ctx.pages.response("bad_request.html", 413, code=413, reason=reason)


def body_limit(scope: Scope, routes: Sequence[BaseRoute], default: int | None) -> int | None:
    """The body limit Starlette will hold this request to: the `max_body_size` of the route the
    router will pick (the first full match, as `Router` picks it) if that route declares one,
    else the app-wide `default`. A route's own limit replaces the app's, both ways: a webhook
    takes a SendGrid batch far over 64 KB, and a limit below 64 KB would be met here too."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            own = getattr(route, "app", None)  # what `Route(max_body_size=...)` wraps it in
            if isinstance(own, RequestBodyLimitMiddleware):
                return own.max_body_size
            return default
    return default


class NewsletterApp(Starlette):
    """Starlette with `SecurityHeaders` outside everything, its own error middleware included,
    and a body declared too large refused with our page before anything reads it (Starlette's
    own limit would answer such a request in plain text, whatever the app said). "Too large"
    is measured against the limit of the route the request will reach (`body_limit`): checked
    against the app-wide 64 KB alone, every large webhook batch would be refused, and a
    provider retries a 413 until it gives up, the bounces and complaints in it lost."""

    def __init__(
        self,
        security_headers: Mapping[str, str],
        too_large: Callable[[int], Response],
        **options: object,
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.security_headers = dict(security_headers)
        self.too_large = too_large

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()

        async def declared_limit(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                length = Headers(scope=scope).get("content-length", "")
                if length.isdigit():
                    limit = body_limit(scope, self.router.routes, self.max_body_size)
                    if limit is not None and int(length) > limit:
                        await self.too_large(limit)(scope, receive, send)
                        return
            await inner(scope, receive, send)

        return SecurityHeaders(declared_limit, self.security_headers)


class SecurityHeaders:
    """Defaults every response gets unless its route chose otherwise.

    `Referrer-Policy: no-referrer` matters most: confirm and unsubscribe URLs carry tokens, and
    a link followed from those pages must not hand the token to another site in a Referer.
    Pages are `no-store` by default for the same reason (archive pages opt in to caching).
    """

    def __init__(self, app: ASGIApp, defaults: Mapping[str, str]) -> None:
        self.app = app
        self.defaults = dict(defaults)

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


def _error_pages(ctx: WebContext, routes: Sequence[BaseRoute] | None = None) -> ErrorPage:
    """The page for an HTTP error (`routes` given) or, without them, for a bug (500)."""

    async def page(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        path = request.scope["path"]
        if status == 404 and routes is not None:
            canonical = _without_slash(request, routes)
            if canonical is not None:
                return RedirectResponse(ctx.url(quote(canonical, safe=_SAFE_PATH)), 301)
            return ctx.pages.response("not_found.html", 404)
        if status == 405 and routes is not None:
            allow = ", ".join(sorted(_allowed(path, routes)))
            return ctx.pages.response(
                "method_not_allowed.html", 405, headers={"Allow": allow}, allow=allow
            )
        if status == 413:  # met while reading a chunked body: the limit of its route
            limit = body_limit(request.scope, routes or (), MAX_BODY_BYTES)
            return too_large(ctx, limit or MAX_BODY_BYTES)
        if 400 <= status < 500 and isinstance(exc, HTTPException):
            return ctx.pages.response("bad_request.html", status, code=status, reason=exc.detail)
        return ctx.pages.response("error.html", 500, code=500)

    return page


def _allowed(path: str, routes: Sequence[BaseRoute]) -> set[str]:
    """Every method some route answers on this path (RFC 9110 15.5.6: the Allow header)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return methods


def _without_slash(request: Request, routes: Sequence[BaseRoute]) -> str | None:
    """The page a GET for "/x/" meant, if "/x" is one: one URL per page, the rest redirects."""
    path = request.scope["path"]
    if request.method not in ("GET", "HEAD") or not path.endswith("/") or path == "/":
        return None
    stripped = path.rstrip("/")
    return stripped if stripped and "GET" in _allowed(stripped, routes) else None
