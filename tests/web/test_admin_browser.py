"""The operator's dashboard in real headless Chromium: log in, look at every page, log out.

Playwright drives Debian's Chromium (/usr/bin/chromium) against the app under uvicorn, with a
month of sign-ups, issues, a complaint and a bounce through the real webhooks, and feed
fetches. Every page is kept as a screenshot under tests/test-artifacts/ (gitignored); the
test also checks that the page ran no script and that the browser reported no CSP violation.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from newsletter.models import DeliveryStatus, FeedReport, Outcome, SubscriberStatus
from tests.support.browser import chromium
from tests.support.clock import T0
from tests.support.config import ROOT
from tests.support.operator import (
    ADMIN_PASSWORD,
    OperatorServer,
    post_sns,
    sent_reader,
    ses_complaint,
    ses_notification,
)
from tests.support.web import Servers, store_issue

ARTIFACTS = ROOT / "tests" / "test-artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Browser]:
    yield from chromium()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def a_month(op: OperatorServer) -> None:
    """Sign-ups, confirmations, unsubscribes over 30 days; eight issues with their ledgers."""
    chance = random.Random(14)
    store, start = op.store, T0 - timedelta(days=29)
    ids = []
    for n in range(160):
        when = start + timedelta(days=chance.randrange(30), hours=chance.randrange(12))
        status = SubscriberStatus.ACTIVE if chance.random() < 0.8 else SubscriberStatus.PENDING
        ids.append(
            store.add_subscriber(f"r{n}@example.org", status=status, source="t", now=when).id
        )
        if chance.random() < 0.06:
            store.set_status(ids[-1], SubscriberStatus.UNSUBSCRIBED, when + timedelta(days=1))
    for offset in range(8, 0, -1):
        day = T0.date() - timedelta(days=offset)
        store_issue(op, day, day.day, render=offset == 1)
        issue = store.get_issue(op.settings.name, day)
        assert issue is not None
        cutoff = datetime.combine(day, time(7), T0.tzinfo)
        for subscriber_id in ids[: 60 + 10 * (8 - offset)]:
            result = DeliveryStatus.SENT if chance.random() > 0.02 else DeliveryStatus.FAILED
            outcome = Outcome(result, "250 ok", f"<{day}.{subscriber_id}@ree-news.example.com>")
            store.record_outcome(issue.id, subscriber_id, outcome, cutoff)
    url = "https://mining-weekly.example.com/feed"
    for hours in (50, 26, 2):
        when = T0 - timedelta(hours=hours)
        store.record_feed_reports(
            [
                FeedReport("REE News (sample)", op.settings.feeds[0].url, True, 12),
                FeedReport("Mining Weekly", url, hours > 30, 4 if hours > 30 else 0,
                           error=None if hours > 30 else "HTTP 503 Service Unavailable"),
            ],
            when,
        )  # fmt: skip


def test_the_operator_logs_in_and_looks_at_every_page(tmp_path: Path, browser: Browser) -> None:
    with Servers() as servers, OperatorServer(tmp_path, servers) as op:
        a_month(op)
        reader = sent_reader(op, "complainer@example.org", 99)
        assert post_sns(op, ses_notification(ses_complaint(reader), op.clock())).status_code == 200
        unknown = ses_complaint(reader, message_id="<not-ours@elsewhere.example>")
        post_sns(op, ses_notification(unknown, op.clock(), message_id="sns-unknown-1"))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda message: _note(problems, message))

        page.goto(f"{op.url}/admin")
        assert page.url == f"{op.url}/admin/login"
        shot(page, "01-login")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        assert "Wrong password" in page.inner_text(".error")
        shot(page, "02-wrong-password")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        assert page.url == f"{op.url}/admin"
        assert page.inner_text("h1") == "Overview"
        assert page.locator("svg.chart").count() == 7
        assert page.locator("svg.chart rect").count() > 100
        assert "over the 0.3% limit" in page.inner_text("body")
        shot(page, "03-overview")

        page.click(f"table a >> text={reader_issue_date()}")
        assert page.inner_text("h1").startswith(f"Issue {reader_issue_date()}")
        shot(page, "04-issue")
        page.click("text=Open the preview")
        assert "REE Daily" in page.title() or page.locator("table").count() > 0
        shot(page, "05-issue-preview")
        page.go_back()
        page.click("text=Bounces & complaints")
        assert "unmatched" in page.inner_text("table")
        shot(page, "06-reports")
        page.click("text=Feeds")
        assert "HTTP 503" in page.inner_text("table")
        shot(page, "07-feeds")

        page.set_viewport_size({"width": 390, "height": 844})
        page.click("text=Overview")
        shot(page, "08-overview-phone")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.click("text=Log out")
        assert page.url == f"{op.url}/admin/login?out=1"
        assert page.inner_text("[role=status]") == "You are logged out."
        shot(page, "09-logged-out")
        page.goto(f"{op.url}/admin/feeds")
        assert page.url == f"{op.url}/admin/login"
        assert page.evaluate("document.scripts.length") == 0
        assert problems == [], problems


def reader_issue_date() -> str:
    return (T0.date() - timedelta(days=1)).isoformat()


def _note(problems: list[str], message: ConsoleMessage) -> None:
    """A CSP violation or a script error (the 401 of the wrong password and the favicon's 404
    are the browser reporting answers we meant)."""
    text = message.text
    if "Content Security Policy" in text or "Refused to" in text or "Uncaught" in text:
        problems.append(text)


del date
