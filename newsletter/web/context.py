"""What every route of the web app shares: the store interface, the service, the page renderer.

One `WebContext` per app, built by `web.create_app` and closed over by the route functions, so
two apps in one process (tests, or the scheduler mounting its own) never share state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter import templating
from newsletter.clock import Clock
from newsletter.config.settings import Settings
from newsletter.models import Issue
from newsletter.subscriptions import Subscriptions, SubscriptionStore, Visitor
from newsletter.web.ratelimit import ClientLimit
from newsletter.web.signups import SignupQueue

USER_AGENT_MAX = 512
PAGE_TEMPLATES = (
    "subscribe.html",
    "check_inbox.html",
    "confirm.html",
    "confirmed.html",
    "unsubscribe.html",
    "unsubscribed.html",
    "link_problem.html",
    "too_many.html",
    "not_found.html",
    "archive_index.html",
    "unsubscribe_help.html",
    "embed.html",
    "snippet.html",
    "error.html",
    "bad_request.html",
    "method_not_allowed.html",
    "busy.html",
    "preferences.html",
)


class WebStore(SubscriptionStore, Protocol):
    """The subscription store plus what the archive and the health check read."""

    def get_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def archive_page(
        self, newsletter: str, before: date | None, limit: int
    ) -> list[tuple[date, str]]: ...
    def ping(self) -> None: ...


class Pages:
    """The HTML pages, rendered from `templates/pages/` with the digest's conventions."""

    def __init__(self, settings: Settings, consent_field: str) -> None:
        self._dir = settings.templates_dir
        self._shared: dict[str, object] = dict(
            name=settings.name,
            base_url=settings.base_url,
            postal_address=settings.postal_address,
            send_time=settings.send_time.strftime("%H:%M"),
            timezone=str(settings.timezone),
            # The form's hidden field: the wording's version, signed as rendered by us, so a
            # sign-up records what the server showed, never what a client claims.
            consent_field=consent_field,
            confirm_days=settings.confirm_max_age_days,
            from_address=settings.from_address,
            # The round-up's name when readers may choose it ("" when weekly mail is off).
            weekly_name=settings.weekly.name if settings.weekly.enabled else "",
        )
        for name in PAGE_TEMPLATES:  # compile now, so a template error stops start-up
            templating.template(self._dir, f"pages/{name}")

    def render(self, name: str, **context: Any) -> str:
        page = templating.template(self._dir, f"pages/{name}")
        return templating.render(page, {**self._shared, **context})

    def response(
        self,
        name: str,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        return HTMLResponse(self.render(name, **context), status, headers=headers)


@dataclass
class WebContext:
    settings: Settings
    store: WebStore
    service: Subscriptions
    pages: Pages
    limiter: ClientLimit
    signups: SignupQueue
    clock: Clock

    def url(self, path: str) -> str:
        """Absolute links from base_url: the app may sit behind a proxy under a path prefix."""
        return f"{self.settings.base_url}{path}"

    def csp(self, frame_ancestors: str = "'none'") -> str:
        """No scripts at all; styles inline; forms post only to us; framed only where allowed."""
        origin = urlsplit(self.settings.base_url)
        return (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
            f"form-action 'self' {origin.scheme}://{origin.netloc}; base-uri 'none'; "
            f"frame-ancestors {frame_ancestors}"
        )

    def security_headers(self) -> dict[str, str]:
        """What every answer carries unless its route chose otherwise (see app.SecurityHeaders).

        HSTS only when base_url is https: the app itself speaks plain HTTP behind the TLS
        proxy, and base_url is what the reader's browser sees.
        """
        headers = {
            "Content-Security-Policy": self.csp(),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        web = self.settings.web
        if web.hsts and self.settings.base_url.startswith("https://"):
            headers["Strict-Transport-Security"] = f"max-age={web.hsts_max_age}"
        return headers


def visitor(request: Request) -> Visitor:
    """IP and user agent for the consent record.

    `request.client.host` is the peer, or the client named by X-Forwarded-For when uvicorn
    trusts the proxy (`--proxy-headers`, `forwarded_allow_ips`).
    """
    host = request.client.host if request.client else ""
    return Visitor(ip=host, user_agent=request.headers.get("user-agent", "")[:USER_AGENT_MAX])
