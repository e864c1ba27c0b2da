"""Prometheus metrics: one registry per app, served on its own listener, never by accident.

Two kinds of numbers. What only this process sees is counted as it happens: web requests by
route (the route's pattern, never the path: paths carry tokens) and their latency, webhook
requests by provider and result, and, in `newsletter run`, each send's messages by outcome,
its rate, and each feed fetch with its latency. What the store knows is read at scrape time,
so it is true whichever process (cron, another host) did the work: subscribers by status,
each recent issue's ledger by status, bounces and complaints by provider and outcome, and the
last 24 hours' sign-ups, confirmations, unsubscribes, bounces and complaints.

`/metrics` is off by default. `newsletter serve` and `newsletter run` serve it on
`[metrics] host:port`, a listener of its own; the public app answers it only with
`on_public_app = true`. With NEWSLETTER_METRICS_TOKEN set, a scrape needs that bearer token.

Under `newsletter serve --workers N` the counts of one process would be a fraction, and a
scrape that reached another worker would see them go backwards. So there the processes use
prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set before the library is
imported): each worker writes its counts to its own file in that folder, and a scrape, of
the parent's listener or of any worker, adds them up.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.clock import Clock
from newsletter.models import Issue, RunSummary, SubscriberStatus

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it
RECENT_ISSUES = 10
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FEED_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


class MetricsStore(Protocol):
    def count_by_status(self) -> dict[SubscriberStatus, int]: ...
    def recent_issues(self, newsletter: str, limit: int = 10) -> list[Issue]: ...
    def ledger_by_issue(self, issue_ids: Iterable[int]) -> dict[int, dict[str, int]]: ...
    def signal_totals(self) -> dict[tuple[str, str, str], int]: ...
    def event_times(self, since: datetime) -> dict[str, list[datetime]]: ...


class Metrics:
    """The live counters of one process and the registry a scrape reads (which, across
    workers, adds up every worker's counters: see the module docstring)."""

    def __init__(self, store: MetricsStore | None, newsletter: str, clock: Clock) -> None:
        r = CollectorRegistry()
        shared = os.environ.get(MULTIPROCESS_ENV)
        if shared:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=shared)  # type: ignore[no-untyped-call]
        else:
            self.registry = r
        self.requests = Counter(
            "newsletter_http_requests", "Web requests answered, by route pattern, method and "
            "status", ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "newsletter_http_request_duration_seconds", "Time to answer a web request",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.webhooks = Counter(
            "newsletter_webhook_requests", "Provider webhook requests, by provider and result",
            ["provider", "result"], registry=r,
        )  # fmt: skip
        self.messages = Counter(
            "newsletter_messages", "Messages this process sent, deferred or failed, by issue",
            ["issue_date", "status"], registry=r,
        )  # fmt: skip
        self.send_rate = Gauge(
            "newsletter_send_rate_messages_per_second", "Messages per second of the last send "
            "run of this process", registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.feed_fetches = Counter(
            "newsletter_feed_fetches", "Feed fetches by feed and result (ok, not_modified, "
            "failed)", ["feed", "result"], registry=r,
        )  # fmt: skip
        self.feed_latency = Histogram(
            "newsletter_feed_fetch_duration_seconds", "Time to fetch and read one feed",
            ["feed"], buckets=FEED_BUCKETS, registry=r,
        )  # fmt: skip
        if store is not None:
            self.registry.register(StoreCollector(store, newsletter, clock))

    def observe_run(self, summary: RunSummary, seconds: float) -> None:
        """One send run of this process (`newsletter run`): messages, rate, feed fetches."""
        day = summary.issue_date.isoformat()
        for status, count in summary.counts.items():
            self.messages.labels(issue_date=day, status=status).inc(count)
        sent = summary.counts.get("sent", 0)
        if seconds > 0 and not summary.dry_run:
            self.send_rate.set(sent / seconds)
        for feed in summary.feeds:
            result = "failed" if not feed.ok else "not_modified" if feed.not_modified else "ok"
            self.feed_fetches.labels(feed=feed.name, result=result).inc()
            self.feed_latency.labels(feed=feed.name).observe(feed.seconds)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class StoreCollector(Collector):
    """Numbers read from the store at each scrape (true across processes)."""

    def __init__(self, store: MetricsStore, newsletter: str, clock: Clock) -> None:
        self.store = store
        self.newsletter = newsletter
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        subscribers = GaugeMetricFamily(
            "newsletter_subscribers", "Subscribers by status", labels=["status"]
        )
        for status, count in self.store.count_by_status().items():
            subscribers.add_metric([status.value], count)
        yield subscribers
        yield self._deliveries(self.store.recent_issues(self.newsletter, RECENT_ISSUES))
        signals = CounterMetricFamily(
            "newsletter_feedback_reports",
            "Bounce and complaint reports recorded, by provider, kind and what was done",
            labels=["provider", "kind", "outcome"],
        )
        for (provider, kind, outcome), count in sorted(self.store.signal_totals().items()):
            signals.add_metric([provider, kind, outcome], count)
        yield signals
        recent = GaugeMetricFamily(
            "newsletter_events_last_24h",
            "Sign-ups, confirmations, unsubscribes, bounces and complaints in the last 24 hours",
            labels=["event"],
        )
        since = self.clock() - timedelta(hours=24)
        for event, times in self.store.event_times(since).items():
            recent.add_metric([event], len(times))
        yield recent

    def _deliveries(self, issues: Sequence[Issue]) -> Metric:
        family = GaugeMetricFamily(
            "newsletter_issue_deliveries",
            f"Ledger rows of the last {RECENT_ISSUES} issues, by issue date and delivery status",
            labels=["issue_date", "status"],
        )
        ledger = self.store.ledger_by_issue(issue.id for issue in issues)
        for issue in issues:
            for status, count in sorted(ledger.get(issue.id, {}).items()):
                family.add_metric([issue.issue_date.isoformat(), status], count)
        return family


def metrics_route(metrics: Metrics, token: str) -> Route:
    async def endpoint(request: Request) -> Response:
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return PlainTextResponse(
                    "a bearer token is needed\n", 401, headers={"WWW-Authenticate": "Bearer"}
                )
        body, content_type = await run_in_threadpool(
            metrics.exposition, request.headers.get("accept", "")
        )
        return Response(body, headers={"Content-Type": content_type})

    return Route("/metrics", endpoint, methods=["GET"])


def metrics_app(metrics: Metrics, token: str = "") -> ASGIApp:
    """The ASGI app of the metrics listener: /metrics and nothing else."""
    from starlette.applications import Starlette

    return Starlette(routes=[metrics_route(metrics, token)])


class RequestMetrics:
    """Counts every request of the public app by its route's pattern, with its latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()  # a duration, not a time of day
        status = 500

        async def remember(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, remember)
        finally:
            route = scope.get("route")
            pattern = getattr(route, "path", None) or "(no route)"
            self.metrics.requests.labels(pattern, scope["method"], str(status)).inc()
            self.metrics.latency.labels(pattern).observe(time.perf_counter() - started)
