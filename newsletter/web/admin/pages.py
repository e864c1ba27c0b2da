"""/admin: the operator's dashboard (login, overview, issues, reports, feeds).

Off unless `[admin]` has a password hash. Every answer is `Cache-Control: no-store`; pages
need no script and render under the app's Content-Security-Policy (charts are inline SVG).
Logging in: at most `login_attempts_per_hour` failures per client IP an hour, then 429; a
POST from another origin is refused; success starts a new session (`sessions.py`) and
redirects, with the cookie SameSite=Strict, HttpOnly, Secure on https, scoped to /admin.
Logging out is a POST carrying the session's CSRF token.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter import templating
from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.signals.rates import COMPLAINTS, HARD_BOUNCES
from newsletter.web.admin import data
from newsletter.web.admin.charts import bar_chart
from newsletter.web.admin.passwords import verify_password
from newsletter.web.admin.sessions import LoginLimiter, Session, Sessions, csrf_ok
from newsletter.web.archive import public_html
from newsletter.web.ratelimit import client_key

log = logging.getLogger("newsletter.admin")
TEMPLATES = Path(__file__).with_name("templates")
COOKIE = "ree_admin"
# Admin URLs carry no secret, so the browser may name our origin on our own POSTs: with the
# app's default `no-referrer` Chromium sends `Origin: null`, which a foreign page can send too.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "same-origin"}
COLORS = {
    "sign-ups": "#3e7cb1",
    "confirmations": "#1f7a3a",
    "unsubscribes": "#9aa5b1",
    "bounces": "#c65d21",
    "complaints": "#b3261e",
}


@dataclass
class AdminContext:
    settings: Settings
    store: Any  # the SqlStore: data.AdminStore plus get_feed_state
    clock: Clock
    sessions: Sessions
    limiter: LoginLimiter

    @property
    def admin_url(self) -> str:
        return f"{self.settings.base_url}/admin"

    @property
    def cookie_path(self) -> str:
        return (urlsplit(self.settings.base_url).path.rstrip("/") or "") + "/admin"

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        compiled = templating.template(TEMPLATES, name)
        shared = {
            "name": self.settings.name,
            "admin_url": self.admin_url,
            "session": None,
            "message": "",
            "notice": "",
            "here": "",
        }
        body = templating.render(compiled, {**shared, **context})
        return HTMLResponse(body, status, headers=NO_STORE)

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), self.clock())

    def same_origin(self, request: Request) -> bool:
        """A browser's POST names its origin; it must be ours ("null" is refused: that is what
        a sandboxed or no-referrer foreign page sends). A missing header (curl) is allowed."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        base = urlsplit(self.settings.base_url)
        return origin == f"{base.scheme}://{base.netloc}"

    def to(self, path: str) -> RedirectResponse:
        return RedirectResponse(f"{self.admin_url}{path}", 303, headers=NO_STORE)


def routes(ctx: AdminContext) -> list[Route]:
    def guarded(view: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            session = ctx.session(request)
            if session is None:
                return ctx.to("/login")
            response: Response = await view(request, session)
            return response

        return endpoint

    async def login_form(request: Request) -> Response:
        if ctx.session(request) is not None:
            return ctx.to("")
        done = request.query_params.get("out") == "1"  # where logging out lands: say it worked
        return ctx.page("login.html", notice="You are logged out." if done else "")

    async def login(request: Request) -> Response:
        client = client_key(request.client.host if request.client else None)
        now = ctx.clock()
        if not ctx.same_origin(request):
            return ctx.page("login.html", 403, message="This form must be sent from this site.")
        until = ctx.limiter.attempt(client, now)  # counted as failed until it succeeds
        if until is not None:
            wait = max(1, int((until - now).total_seconds()))
            response = ctx.page("login.html", 429, message="Too many failed logins; wait.")
            response.headers["Retry-After"] = str(wait)
            return response
        form = await request.form()
        password = form.get("password")
        good = isinstance(password, str) and await run_in_threadpool(
            _verify, password, ctx.settings.admin.password_hash
        )
        if not good:
            log.warning("admin: failed login from %s", client)
            return ctx.page("login.html", 401, message="Wrong password.")
        ctx.limiter.succeeded(client, now)
        session = ctx.sessions.start(now, replacing=request.cookies.get(COOKIE))
        log.info("admin: login from %s", client)
        redirect = ctx.to("")
        redirect.set_cookie(
            COOKIE,
            session.id,
            max_age=int(ctx.sessions.lifetime.total_seconds()),
            path=ctx.cookie_path,
            secure=ctx.settings.base_url.startswith("https://"),
            httponly=True,
            samesite="strict",
        )
        return redirect

    async def logout(request: Request) -> Response:
        session = ctx.session(request)
        form = await request.form()
        token = form.get("csrf")
        if session is None or not isinstance(token, str) or not csrf_ok(session, token):
            return ctx.page("login.html", 403, message="That request was not valid; log in again.")
        ctx.sessions.end(session.id)
        response = ctx.to("/login?out=1")
        response.delete_cookie(COOKIE, path=ctx.cookie_path)
        return response

    async def overview(request: Request, session: Session) -> Response:
        context = await run_in_threadpool(_overview, ctx)
        return ctx.page("overview.html", session=session, here="overview", **context)

    async def issue(request: Request, session: Session) -> Response:
        day = _date(request.path_params["day"])
        row = None if day is None else await run_in_threadpool(_issue, ctx, day)
        if row is None:
            return ctx.page("not_found.html", 404, session=session, message="No such issue.")
        return ctx.page("issue.html", session=session, here="issue", **row)

    async def preview(request: Request, session: Session) -> Response:
        day = _date(request.path_params["day"])
        found = (
            None
            if day is None
            else await run_in_threadpool(ctx.store.get_issue, ctx.settings.name, day)
        )
        if found is None:
            return ctx.page("not_found.html", 404, session=session, message="No such issue.")
        page = public_html(found.digest.html, ctx.settings.name, ctx.settings.base_url)
        return HTMLResponse(page, headers=NO_STORE)

    async def reports(request: Request, session: Session) -> Response:
        rows = await run_in_threadpool(ctx.store.recent_signals, 100)
        return ctx.page("reports.html", session=session, here="reports", reports=rows)

    async def feeds(request: Request, session: Session) -> Response:
        rows = await run_in_threadpool(_feeds, ctx)
        return ctx.page("feeds.html", session=session, here="feeds", feeds=rows, days=7)

    return [
        Route("/admin/login", login_form, methods=["GET"]),
        Route("/admin/login", login, methods=["POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Route("/admin", guarded(overview), methods=["GET"]),
        Route("/admin/issues/{day}", guarded(issue), methods=["GET"]),
        Route("/admin/issues/{day}/preview", guarded(preview), methods=["GET"]),
        Route("/admin/reports", guarded(reports), methods=["GET"]),
        Route("/admin/feeds", guarded(feeds), methods=["GET"]),
    ]


# scrypt at N=2^17 takes 128 MiB a check: at most two at once, whatever arrives.
_CHECKS = threading.BoundedSemaphore(2)


def _verify(password: str, stored: str) -> bool:
    with _CHECKS:
        return verify_password(password, stored)


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _overview(ctx: AdminContext) -> dict[str, Any]:
    now = ctx.clock()
    labels, series = data.daily_series(ctx.store, now, ctx.settings.timezone)
    charts = [
        {"title": name.capitalize(), "note": f"{sum(values)} in {data.DAYS} days",
         "svg": bar_chart(f"{name} per day", labels, values, COLORS[name])}
        for name, values in series.items()
    ]  # fmt: skip
    rows = data.issue_rows(ctx.store, ctx.settings.name)
    oldest_first = list(reversed(rows))
    issue_days = [row.issue.issue_date for row in oldest_first]
    charts.append({
        "title": "Messages sent per issue",
        "note": f"{sum(r.rates.sent for r in rows)} in {len(rows)} issues",
        "svg": bar_chart("messages sent per issue", issue_days,
                         [r.rates.sent for r in oldest_first], "#3e7cb1"),
    })  # fmt: skip
    charts.append({
        "title": "Complaint rate per issue",
        "note": f"highest {max((r.rates.complaint_rate for r in rows), default=0.0):.2%}; "
                "lines at 0.1% and 0.3%",
        "svg": bar_chart(
            "complaint rate per issue", issue_days,
            [r.rates.complaint_rate for r in oldest_first], "#b3261e", percent=True,
            lines=[(COMPLAINTS.warn, "0.1%: Gmail's 'keep below'", "#f0b429"),
                   (COMPLAINTS.limit, "0.3%: Gmail and Yahoo's limit", "#b3261e")],
        ),
    })  # fmt: skip
    counts = ctx.store.count_by_status()
    recent = ctx.store.recent_signals(1000)
    since = now - timedelta(days=data.DAYS)
    unmatched = sum(1 for r in recent if r["outcome"] == "unmatched" and r["received_at"] >= since)
    return {
        "rows": rows,
        "charts": charts,
        "counts": [(status.value, counts[status]) for status in SubscriberStatus],
        "days": data.DAYS,
        "unmatched": unmatched,
        "complaint_warn": COMPLAINTS.warn,
        "bounce_warn": HARD_BOUNCES.warn,
    }


def _issue(ctx: AdminContext, day: date) -> dict[str, Any] | None:
    row = data.one_issue(ctx.store, ctx.settings.name, day)
    if row is None:
        return None
    untried = 0 if row.issue.status.finished else ctx.store.untried_count(row.issue.id)
    return {"row": row, "statuses": [s.value for s in DeliveryStatus], "untried": untried}


def _feeds(ctx: AdminContext) -> list[dict[str, Any]]:
    health = {
        entry["url"]: entry for entry in ctx.store.feed_health(ctx.clock() - timedelta(days=7))
    }
    rows = []
    for feed in ctx.settings.feeds:
        entry = health.pop(feed.url, None)
        if entry is None:
            continue
        rows.append({**entry, "name": feed.name, "state": ctx.store.get_feed_state(feed.url)})
    for entry in health.values():  # feeds no longer configured, still in the record
        rows.append({**entry, "state": ctx.store.get_feed_state(entry["url"])})
    return rows
