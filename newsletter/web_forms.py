"""The sign-up form: the page, the embeddable versions for the news site, and its POST.

The POST answers before it looks at the store. Whether the address is new, pending, active or
suppressed, the reader sees the same "check your inbox" page after the same work (syntax check
and limits only); recording the request and sending the mail run afterwards as a background
job. So neither the page nor its timing tells anyone who reads the newsletter (I.47).
"""

from __future__ import annotations

import logging
import re

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .addresses import normalize_address
from .errors import AddressError
from .ratelimit import client_key
from .subscriptions import SignupRequest
from .web_context import WebContext, visitor

log = logging.getLogger(__name__)
HONEYPOT = "website"  # a field people never see; bots that fill every field fill it too
SOURCES = ("subscribe-page", "embed", "snippet")
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
FIELD_MAX = 1024


def routes(ctx: WebContext) -> list[Route]:
    async def subscribe_page(request: Request) -> Response:
        return ctx.pages.response("subscribe.html", email="", error="")

    async def embed(request: Request) -> Response:
        """The form alone, for an iframe on the news site: the one page others may frame."""
        csp = ctx.csp(frame_ancestors="*")
        return ctx.pages.response("embed.html", headers={"Content-Security-Policy": csp})

    async def snippet(request: Request) -> Response:
        """The form as plain HTML to paste into the site's own pages (no iframe needed)."""
        return PlainTextResponse(ctx.pages.render("snippet.html"))

    async def subscribe(request: Request) -> Response:
        limited = too_many(ctx, request)
        if limited is not None:
            return limited
        form = await request.form(max_files=0, max_fields=20, max_part_size=FIELD_MAX)
        raw = _field(form, "email")
        if _field(form, HONEYPOT):
            return ctx.pages.response("check_inbox.html", email=raw)
        try:
            email = normalize_address(raw)
        except AddressError as exc:
            return ctx.pages.response("subscribe.html", 422, email=raw, error=exc.reason)
        signup = SignupRequest(
            email,
            source=_choice(_field(form, "source"), SOURCES, "form"),
            visitor=visitor(request),
            page_url=_page_url(request),
            consent_version=_version(_field(form, "consent_version")),
            at=ctx.clock(),
        )
        later = sign_up_later(ctx, signup)
        return ctx.pages.response("check_inbox.html", email=email, background=later)

    return [
        Route("/", subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/embed", embed, methods=["GET"]),
        Route("/embed/snippet", snippet, methods=["GET"]),
    ]


def too_many(ctx: WebContext, request: Request) -> Response | None:
    """The per-client limit on anything that can make us send a confirmation mail."""
    now = ctx.clock()
    key = client_key(request.client.host if request.client else None)
    if ctx.limiter.hit(key, now):
        return None
    wait = ctx.limiter.retry_after(key, now)
    return ctx.pages.response("too_many.html", 429, headers={"Retry-After": str(wait)})


def sign_up_later(ctx: WebContext, request: SignupRequest) -> BackgroundTask:
    """Record the request and send the mail after the response (see the module docstring)."""
    ctx.jobs.started()

    async def job() -> None:
        try:
            signup = await run_in_threadpool(ctx.service.sign_up, request)
            if signup.mail is not None:
                await ctx.service.send(signup.mail)
        except Exception:  # a background job has no caller to raise to; keep the server up
            log.exception("sign-up (source %s) failed after the response", request.source)
        finally:
            ctx.jobs.finished()

    return BackgroundTask(job)


def _field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip()[:FIELD_MAX] if isinstance(value, str) else ""


def _choice(value: str, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def _version(value: str) -> str:
    """The consent wording the form showed (a pasted snippet may be older); "" = current."""
    return value if _VERSION.fullmatch(value) else ""


def _page_url(request: Request) -> str:
    """Where the form was: the Referer, when the browser sent one and it is a web address."""
    referer = request.headers.get("referer", "")
    return referer[:FIELD_MAX] if referer.startswith(("https://", "http://")) else ""
