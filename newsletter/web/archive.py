"""The public archive ("view in your browser") and the health check for deployment.

An archived issue is the stored digest HTML with the per-reader placeholders replaced by
neutral text and links, so the page is the same for everyone and carries nobody's address or
unsubscribe token (the digest links to it from every copy).
"""

from __future__ import annotations

import html
import logging
import re
from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from newsletter.models import (
    EMAIL_PLACEHOLDER,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    IssueStatus,
)
from newsletter.render import long_date
from newsletter.web.context import WebContext

log = logging.getLogger(__name__)
PAGE_SIZE = 30
WEEKLY_SHOWN = 8  # round-ups listed on the archive's first page
PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What only makes sense in a reader's inbox ("View in your browser", "You receive this because
# you subscribed with ..."); the digest template marks it. Feed text cannot carry the markers:
# cleaning drops every comment from articles.
_EMAIL_ONLY = re.compile(r"<!--email-only-->.*?<!--/email-only-->", re.DOTALL)
_BANNER = (
    '<div style="background-color: #1e2a38; padding: 12px 16px; text-align: center; '
    "font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 15px; "
    'line-height: 22px; color: #ffffff;">{name} arrives in your inbox every morning. '
    '<a href="{subscribe}" style="color: #f2c08f; font-weight: bold;">Subscribe for free</a>'
    ' &middot; <a href="{archive}" style="color: #b8c4d1;">All issues</a></div>'
)


def public_html(stored: str, name: str, base_url: str) -> str:
    """The issue as anyone may see it: no inbox-only lines, neutral placeholders, and a
    subscribe banner on top."""
    page = _EMAIL_ONLY.sub("", stored).replace(EMAIL_PLACEHOLDER, "your email address")
    page = page.replace(UNSUBSCRIBE_URL_PLACEHOLDER, html.escape(f"{base_url}/unsubscribe"))
    page = page.replace(PREFERENCES_URL_PLACEHOLDER, html.escape(f"{base_url}/unsubscribe"))
    banner = _BANNER.format(
        name=html.escape(name),
        subscribe=html.escape(f"{base_url}/subscribe"),
        archive=html.escape(f"{base_url}/archive"),
    )
    return _BODY_TAG.sub(lambda found: found.group(0) + banner, page, count=1)


def routes(ctx: WebContext) -> list[Route]:
    name = ctx.settings.name
    weekly = ctx.settings.weekly.name if ctx.settings.weekly.enabled else ""

    async def index(request: Request) -> Response:
        before = _date(request.query_params.get("before", ""))
        rows = await run_in_threadpool(ctx.store.archive_page, name, before, PAGE_SIZE + 1)
        older = ""
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            older = ctx.url(f"/archive?before={rows[-1][0].isoformat()}")
        issues = [
            {
                "url": ctx.url(f"/archive/{day.isoformat()}"),
                "long_date": long_date(day),
                "headline": _headline(subject, name),
            }
            for day, subject in rows
        ]
        round_ups = []
        if weekly and before is None:  # the newest round-ups beside the first page of dailies
            newest = await run_in_threadpool(ctx.store.archive_page, weekly, None, WEEKLY_SHOWN)
            round_ups = [
                {
                    "url": ctx.url(f"/archive/weekly/{day.isoformat()}"),
                    "long_date": long_date(day),
                    "headline": _headline(subject, weekly),
                }
                for day, subject in newest
            ]
        return ctx.pages.response(
            "archive_index.html",
            issues=issues,
            round_ups=round_ups,
            older_url=older,
            newest=before is None,
            headers=PUBLIC_CACHE,
        )

    async def issue(request: Request) -> Response:
        return await shown(request, name)

    async def round_up(request: Request) -> Response:
        return await shown(request, weekly) if weekly else ctx.pages.response("not_found.html", 404)

    async def shown(request: Request, stream: str) -> Response:
        day = _date(request.path_params["day"])
        found = None if day is None else await run_in_threadpool(ctx.store.get_issue, stream, day)
        if found is None or found.status is IssueStatus.ABANDONED:
            return ctx.pages.response("not_found.html", 404)
        page = public_html(found.digest.html, stream, ctx.settings.base_url)
        return HTMLResponse(page, headers=PUBLIC_CACHE)

    async def health(request: Request) -> Response:
        """200 when the store answers; 503 otherwise, for the load balancer or monitor."""
        try:
            await run_in_threadpool(ctx.store.ping)
        except Exception as exc:  # any failure of the database means "not healthy"
            log.warning("health check: the store does not answer: %s", exc)
            return JSONResponse({"status": "error", "store": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "store": "ok"})

    return [
        Route("/archive", index, methods=["GET"]),
        Route("/archive/{day}", issue, methods=["GET"]),
        Route("/archive/weekly/{day}", round_up, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ]


def _headline(subject: str, name: str) -> str:
    """The subject without its "REE Daily, 28 Nov 2026: " prefix; the date is shown apart."""
    prefix, _, headline = subject.partition(": ")
    return headline if headline and prefix.startswith(name) else subject


def _date(value: str) -> date | None:
    """The date of a canonical YYYY-MM-DD, else None.

    One URL per issue: `date.fromisoformat` also reads ISO week dates ("2026-W48-6") and, from
    Python 3.11, compact forms ("20261128"), so only a value that reads back as itself counts.
    """
    if not _ISO_DAY.fullmatch(value):
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if day.isoformat() == value else None
