"""What every route of the web app shares: the store interface, the service, the page renderer.

One `WebContext` per app, built by `web.create_app` and closed over by the route functions, so
two apps in one process (tests, or the scheduler mounting its own) never share state.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol
from urllib.parse import urlsplit

import jinja2
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .config import Settings
from .errors import RenderError
from .models import Issue
from .ratelimit import SlidingWindowLimiter
from .subscriptions import Clock, Subscriptions, SubscriptionStore, Visitor

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
)


class WebStore(SubscriptionStore, Protocol):
    """The subscription store plus what the archive and the health check read."""

    def get_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def archive_page(
        self, newsletter: str, before: date | None, limit: int
    ) -> list[tuple[date, str]]: ...
    def ping(self) -> None: ...


class BackgroundJobs:
    """Counts sign-up jobs still running after their response was sent.

    A sign-up's store work and mail happen after the answer so that the answer cannot depend on
    whether the address is known (email standards I.47); tests and an orderly shutdown wait
    here for those jobs to finish.
    """

    def __init__(self) -> None:
        self._pending = 0
        self._changed = threading.Condition()

    def started(self) -> None:
        with self._changed:
            self._pending += 1

    def finished(self) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)


class Pages:
    """The HTML pages, rendered from `templates/pages/` with the digest's conventions."""

    def __init__(self, settings: Settings) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(settings.templates_dir),
            autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals.update(
            name=settings.name,
            base_url=settings.base_url,
            postal_address=settings.postal_address,
            send_time=settings.send_time.strftime("%H:%M"),
            timezone=str(settings.timezone),
            consent_version=settings.web.consent_version,
            confirm_days=settings.confirm_max_age_days,
            from_address=settings.from_address,
        )
        for name in PAGE_TEMPLATES:  # compile now, so a template error stops start-up
            self._template(name)

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self._env.get_template(f"pages/{name}")
        except jinja2.TemplateError as exc:
            raise RenderError(f"page template {name}: {exc}") from exc

    def render(self, name: str, **context: Any) -> str:
        return self._template(name).render(context)

    def response(
        self,
        name: str,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        **context: Any,
    ) -> HTMLResponse:
        return HTMLResponse(
            self.render(name, **context), status, headers=headers, background=background
        )


@dataclass
class WebContext:
    settings: Settings
    store: WebStore
    service: Subscriptions
    pages: Pages
    limiter: SlidingWindowLimiter
    jobs: BackgroundJobs
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


def visitor(request: Request) -> Visitor:
    """IP and user agent for the consent record.

    `request.client.host` is the peer, or the client named by X-Forwarded-For when uvicorn
    trusts the proxy (`--proxy-headers`, `forwarded_allow_ips`).
    """
    host = request.client.host if request.client else ""
    return Visitor(ip=host, user_agent=request.headers.get("user-agent", "")[:USER_AGENT_MAX])
