"""What the operator gets from the web app: provider webhooks, /admin and request metrics.

`create_app` builds one `Operator` and adds its routes and its middleware; each part is off
until `[webhooks]`, `[admin]` or `[metrics]` turns it on, so a config without those tables
serves exactly the subscription app. `Operator.metrics` is what `newsletter serve` and
`newsletter run` serve on the metrics listener (`web/metrics.py`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol, cast

from starlette.applications import Starlette
from starlette.routing import Route

from newsletter.bounces import Verp
from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.signals import SignalDesk, SignalStore
from newsletter.web import admin, webhooks
from newsletter.web.admin.data import AdminStore
from newsletter.web.admin.sessions import LoginLimiter, Sessions
from newsletter.web.metrics import Metrics, MetricsStore, RequestMetrics, metrics_route
from newsletter.web.webhooks.base import WebhookContext
from newsletter.web.webhooks.ses import https_get


class OperatorStore(SignalStore, MetricsStore, AdminStore, Protocol):
    """The store's side of the operator's features (`store.signals.SignalsMixin` and more)."""


class Operator:
    def __init__(self, settings: Settings, store: object, clock: Clock) -> None:
        self.settings = settings
        self.store = cast(OperatorStore, store)
        self.clock = clock
        self.metrics = (
            Metrics(self.store, settings.name, clock) if settings.metrics.enabled else None
        )
        self.fetch = https_get  # outbound HTTPS (SNS); a test hands its own
        verp = Verp(settings.secret_keys, settings.delivery.verp_domain or settings.sender_domain)
        self.desk = SignalDesk(self.store, verp, settings.delivery.bounce_threshold, clock)

    def _fetch(self, url: str) -> bytes:
        return self.fetch(url)

    def routes(self) -> list[Route]:
        found: list[Route] = []
        if self.settings.webhooks.enabled:
            context = WebhookContext(
                self.settings, self.desk, self.clock, self.metrics, self._fetch
            )
            found.extend(webhooks.routes(context))
        if self.settings.admin.enabled:
            config = self.settings.admin
            found.extend(
                admin.routes(
                    admin.AdminContext(
                        settings=self.settings,
                        store=self.store,
                        clock=self.clock,
                        sessions=Sessions(timedelta(hours=config.session_hours)),
                        limiter=LoginLimiter(config.login_attempts_per_hour),
                    )
                )
            )
        if self.metrics is not None and self.settings.metrics.on_public_app:
            found.append(metrics_route(self.metrics, self.settings.metrics.token))
        return found

    def install(self, app: Starlette) -> None:
        """Count the app's requests (when metrics are on) and let the faces find us."""
        if self.metrics is not None:
            app.add_middleware(RequestMetrics, metrics=self.metrics)
        app.state.operator = self


def operator_of(app: Any) -> Operator | None:
    """The app's Operator, if it was built by `create_app`."""
    found = getattr(getattr(app, "state", None), "operator", None)
    return found if isinstance(found, Operator) else None
