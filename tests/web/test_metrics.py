"""/metrics: off by default, its own listener (a second uvicorn here), never the public app's
unless configured, a bearer token when one is set; what it counts is checked by parsing the
exposition with prometheus-client's own parser.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from newsletter.config.operator import MetricsConfig
from newsletter.models import FeedReport, RunSummary
from newsletter.web.metrics import Metrics, metrics_app
from newsletter.web.operator import operator_of
from tests.support.operator import (
    OperatorServer,
    post_sns,
    sent_reader,
    ses_complaint,
    ses_notification,
)
from tests.support.web import Servers


class Listener:
    """An ASGI app on its own uvicorn (port 0), as `newsletter serve` runs the metrics one."""

    def __init__(self, app: object) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def op(tmp_path: Path, servers: Servers) -> Iterator[OperatorServer]:
    with OperatorServer(tmp_path, servers) as server:
        yield server


def scrape(op: OperatorServer, **headers: str) -> httpx.Response:
    operator = operator_of(op.app)
    assert operator is not None and operator.metrics is not None
    app = metrics_app(operator.metrics, op.settings.metrics.token)
    with Listener(app) as url, httpx.Client(base_url=url) as client:
        return client.get("/metrics", headers=headers)


def test_the_public_app_does_not_answer_metrics_unless_configured(
    op: OperatorServer, tmp_path: Path, servers: Servers
) -> None:
    assert op.client.get("/metrics").status_code == 404
    op.__exit__(None, None, None)
    with OperatorServer(
        tmp_path, servers, metrics=MetricsConfig(enabled=True, on_public_app=True)
    ) as public:
        answer = public.client.get("/metrics")
        assert answer.status_code == 200
        assert "newsletter_subscribers" in answer.text
    op.__enter__()


def test_what_the_metrics_count(op: OperatorServer) -> None:
    reader = sent_reader(op)
    sent_reader(op, "other@example.org", 2)
    post_sns(op, ses_notification(ses_complaint(reader), op.clock()))
    op.client.get("/u/some.secret-token")
    op.client.get("/subscribe")
    op.client.post("/webhooks/mailgun", content=b"{}")
    answer = scrape(op)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = samples(answer.text)
    assert value(found, "newsletter_subscribers", status="active") == 1
    assert value(found, "newsletter_subscribers", status="unsubscribed") == 1
    assert value(found, "newsletter_issue_deliveries", issue_date="2026-11-27", status="sent") == 2
    assert value(
        found, "newsletter_feedback_reports_total", provider="ses", kind="complaint",
        outcome="unsubscribed",
    ) == 1  # fmt: skip
    assert value(found, "newsletter_events_last_24h", event="unsubscribes") == 1
    assert value(found, "newsletter_webhook_requests_total", provider="ses", result="accepted") == 1
    assert (
        value(found, "newsletter_webhook_requests_total", provider="mailgun", result="bad-request")
        == 1
    )
    # route patterns, never paths: a token in a URL must not become a label
    assert (
        value(
            found, "newsletter_http_requests_total", route="/u/{token}", method="GET", status="400"
        )
        == 1
    )
    assert (
        value(
            found, "newsletter_http_requests_total", route="/subscribe", method="GET", status="200"
        )
        == 1
    )
    assert "some.secret-token" not in answer.text
    assert value(found, "newsletter_http_request_duration_seconds_count", route="/subscribe") == 1


def test_a_metrics_token_is_required_when_set(tmp_path: Path, servers: Servers) -> None:
    config = MetricsConfig(enabled=True, token="scrape-token-1")
    with OperatorServer(tmp_path, servers, metrics=config) as op:
        refused = scrape(op)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "newsletter_" not in refused.text
        assert scrape(op, Authorization="Bearer wrong").status_code == 401
        assert scrape(op, Authorization="Bearer scrape-token-1").status_code == 200


def test_metrics_off_means_no_registry_and_no_middleware(tmp_path: Path, servers: Servers) -> None:
    with OperatorServer(tmp_path, servers, metrics=MetricsConfig()) as op:
        operator = operator_of(op.app)
        assert operator is not None and operator.metrics is None
        assert op.client.get("/metrics").status_code == 404


def test_a_send_run_counts_messages_rate_and_feed_fetches() -> None:
    metrics = Metrics(None, "REE Daily", lambda: None)  # type: ignore[arg-type, return-value]
    summary = RunSummary(
        issue_date=date(2026, 11, 28),
        dry_run=False,
        counts={"sent": 90, "deferred": 6, "failed": 4},
        feeds=(
            FeedReport("REE News", "https://a.example/feed", True, 12, seconds=0.3),
            FeedReport(
                "Mining Weekly", "https://b.example/feed", False, error="HTTP 503", seconds=2.0
            ),
        ),
    )
    metrics.observe_run(summary, seconds=3.0)
    body, _ = metrics.exposition("")
    found = samples(body.decode())
    assert value(found, "newsletter_messages_total", issue_date="2026-11-28", status="sent") == 90
    assert value(found, "newsletter_messages_total", issue_date="2026-11-28", status="failed") == 4
    assert value(found, "newsletter_send_rate_messages_per_second") == 30
    assert value(found, "newsletter_feed_fetches_total", feed="Mining Weekly", result="failed") == 1
    assert value(found, "newsletter_feed_fetches_total", feed="REE News", result="ok") == 1
    assert value(found, "newsletter_feed_fetch_duration_seconds_sum", feed="Mining Weekly") == 2.0
    assert (
        value(found, "newsletter_feed_fetch_duration_seconds_bucket", feed="REE News", le="0.5")
        == 1
    )
