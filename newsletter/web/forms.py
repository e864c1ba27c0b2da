"""The sign-up form: the page, the embeddable versions for the news site, and its POST.

The POST answers before it looks at the store. Whether the address is new, pending, active or
suppressed, the reader sees the same "check your inbox" page after the same work (syntax check
and limits only), and the store work and the mail are queued for a worker that does them at a
fixed pace and in one shape (`web.signups`). So neither the page nor its timing, nor the timing
of the requests after it, tells anyone who reads the newsletter (OWASP's account-enumeration
testing guide: same status, body and latency whoever asks).

A bot that fills the honeypot gets exactly what a person gets: the same page with the address
as we would store it, the same 422 for an invalid address, the same count against its limit.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.errors import AddressError
from newsletter.models import Frequency
from newsletter.subscriptions import SignupRequest
from newsletter.web.context import WebContext, visitor
from newsletter.web.ratelimit import client_key
from newsletter.web.signups import SignupJob

log = logging.getLogger(__name__)
HONEYPOT = "website"  # a field people never see; bots that fill every field fill it too
SOURCES = ("subscribe-page", "embed", "snippet")
FIELD_MAX = 1024
MAX_FIELDS = 20
BUSY_RETRY_AFTER = 60  # seconds; the queue drains ~1,000 jobs a minute


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
        form = await read_form(request)
        raw = _field(form, "email")
        try:
            email = ctx.service.normalize(raw)
        except AddressError as exc:  # nothing stored, nothing counted: it costs us nothing
            return ctx.pages.response("subscribe.html", 422, email=raw, error=exc.reason)
        limited = await too_many(ctx, request)
        if limited is not None:
            return limited
        version = ctx.service.tokens.read_consent_version(_field(form, "consent_version"))
        signup = SignupRequest(
            email,
            source=_choice(_field(form, "source"), SOURCES, "form"),
            visitor=visitor(request),
            page_url=_page_url(request),
            consent_version=version or "",
            frequency=_frequency(ctx, _field(form, "frequency")),
            at=ctx.clock(),
        )
        return queued(ctx, SignupJob(signup, decoy=bool(_field(form, HONEYPOT))))

    return [
        Route("/", subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/embed", embed, methods=["GET"]),
        Route("/embed/snippet", snippet, methods=["GET"]),
    ]


async def read_form(request: Request) -> FormData:
    """The posted fields; HTTPException 400 naming what is wrong with a form we cannot take."""
    try:
        return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=FIELD_MAX)
    except HTTPException as exc:
        if exc.status_code == 413:  # the body limit, met while reading: answered as such
            raise
        raise HTTPException(400, form_problem(str(exc.detail))) from None


def form_problem(detail: str) -> str:
    """The multipart parser's complaint, said for a person."""
    if detail.startswith("Too many files"):
        return "This form takes no file uploads; send just your email address."
    if detail.startswith("Too many fields"):
        return f"The form was sent with more than {MAX_FIELDS} fields; send just the sign-up form."
    if detail.startswith(("Part exceeded maximum size", "Field exceeded maximum size")):
        return f"A field of the form is longer than {FIELD_MAX} bytes."
    return f"The form could not be read ({detail.rstrip('.')})."


async def too_many(ctx: WebContext, request: Request) -> Response | None:
    """The per-client limit on anything that can make us send a confirmation mail (in a thread:
    with `[web] redis_url` it asks Redis)."""
    now = ctx.clock()
    key = client_key(request.client.host if request.client else None)
    wait = await run_in_threadpool(ctx.limiter.admit, key, now)
    if not wait:
        return None
    return ctx.pages.response("too_many.html", 429, headers={"Retry-After": str(wait)}, wait=wait)


def queued(ctx: WebContext, job: SignupJob) -> Response:
    """Hand the job to the worker and answer "check your inbox"; 503 when the queue is full."""
    if not ctx.signups.offer(job):
        log.warning("sign-up queue full (%d jobs): answering 503", ctx.signups.capacity)
        headers = {"Retry-After": str(BUSY_RETRY_AFTER)}
        return ctx.pages.response("busy.html", 503, headers=headers)
    return ctx.pages.response("check_inbox.html", email=job.request.address)


def _frequency(ctx: WebContext, value: str) -> Frequency:
    """The reader's choice on the form; anything else (or weekly mail switched off) is daily."""
    if ctx.settings.weekly.enabled and value == Frequency.WEEKLY.value:
        return Frequency.WEEKLY
    return Frequency.DAILY


def _field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip()[:FIELD_MAX] if isinstance(value, str) else ""


def _choice(value: str, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def _page_url(request: Request) -> str:
    """Where the form was: the Referer, when the browser sent one and it is a web address."""
    referer = request.headers.get("referer", "")
    return referer[:FIELD_MAX] if referer.startswith(("https://", "http://")) else ""
