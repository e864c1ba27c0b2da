"""A reader's whole journey in real headless Chromium: sign up, confirm from the mail, leave.

Playwright drives Debian's Chromium (/usr/bin/chromium; no browser download) against the app
under uvicorn with a real aiosmtpd server. Every page is kept as a screenshot under
`tests/test-artifacts/` (gitignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from newsletter.models import SubscriberStatus
from newsletter.tokens import Tokens, unsubscribe_url
from tests.support.browser import chromium
from tests.support.config import ROOT
from tests.support.feedserver import FeedServer
from tests.support.web import HEADLINE, Servers, WebServer, store_issue, text_part

ARTIFACTS = ROOT / "tests" / "test-artifacts"

pytestmark = pytest.mark.slow  # real processes (or a browser): `make test-fast` skips them


@pytest.fixture
def browser() -> Iterator[Browser]:
    yield from chromium()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_up_confirm_and_unsubscribe_in_a_browser(tmp_path: Path, browser: Browser) -> None:
    with Servers() as servers, WebServer(tmp_path, servers) as web:
        page = browser.new_page(viewport={"width": 1024, "height": 800})
        page.goto(f"{web.url}/subscribe")
        assert HEADLINE in page.inner_text("h1")
        shot(page, "01-subscribe")
        page.fill("#email", "not-an-address")
        page.evaluate("document.querySelector('#email').type = 'text'")  # past the browser check
        page.click("button[type=submit]")
        assert "must have an @-sign" in page.inner_text(".error")
        shot(page, "02-subscribe-invalid-address")

        page.fill("#email", "Reader@Example.org")
        page.click("button[type=submit]")
        assert page.inner_text("h1") == "Check your inbox"
        shot(page, "03-check-your-inbox")
        web.idle()
        [mail] = web.mails()
        assert mail["To"] == "reader@example.org"
        html_part = mail.get_body(("html",))
        assert html_part is not None
        page.set_content(str(html_part.get_content()))
        shot(page, "04-confirmation-email")
        assert "/confirm/" in text_part(mail)

        page.goto(f"{web.url}{web.confirm_path()}")
        assert page.inner_text("h1") == "Confirm your subscription"
        assert web.status("reader@example.org") is SubscriberStatus.PENDING
        shot(page, "05-confirm")
        page.click("text=Yes, subscribe me")
        assert page.inner_text("h1") == "You're subscribed"
        assert web.status("reader@example.org") is SubscriberStatus.ACTIVE
        shot(page, "06-confirmed")

        subscriber = web.store.get_subscriber("reader@example.org")
        assert subscriber is not None
        tokens = Tokens(web.settings.secret_keys, timedelta(days=7), web.clock)
        page.goto(unsubscribe_url(web.url, tokens.unsubscribe(subscriber.public_id)))
        assert page.inner_text("h1") == "Unsubscribe from REE Daily?"
        assert web.status("reader@example.org") is SubscriberStatus.ACTIVE
        shot(page, "07-unsubscribe")
        page.click("button[type=submit]")
        assert page.inner_text("h1") == "You're unsubscribed"
        assert web.status("reader@example.org") is SubscriberStatus.UNSUBSCRIBED
        shot(page, "08-unsubscribed")
        other_pages(web, page)


def other_pages(web: WebServer, page: Page) -> None:
    """The remaining pages, for the screenshots (and a check that each renders)."""
    for day in (26, 27, 28):
        store_issue(web, date(2026, 11, day), day)
    views = [
        ("/archive", "Past issues", "09-archive"),
        ("/archive/2026-11-28", "REE Daily", "10-archived-issue"),
        ("/confirm/forged.token", "This link does not work", "11-link-invalid"),
        ("/unsubscribe", "How to unsubscribe", "13-unsubscribe-help"),
        ("/no-such-page", "Page not found", "14-not-found"),
    ]
    for path, heading, name in views:
        page.goto(f"{web.url}{path}")
        assert heading in page.inner_text("body")
        shot(page, name)
    web.sign_up("late@example.org")
    web.idle()
    web.clock.advance(days=8)
    page.goto(f"{web.url}{web.confirm_path()}")
    assert page.inner_text("h1") == "This link has expired"
    shot(page, "12-link-expired")
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{web.url}/subscribe")
    shot(page, "15-subscribe-phone")
    page.set_viewport_size({"width": 760, "height": 400})
    frame = f'<iframe src="{web.url}/embed" style="border:0;width:100%;height:340px"></iframe>'
    article = f"<body style='background:#f3f3f3;padding:20px'><p>An article.</p>{frame}</body>"
    with FeedServer() as news_site:  # "the news site": another origin on the same host
        url = news_site.add("/an-article", article.encode(), content_type="text/html")
        page.goto(url)
        page.frame_locator("iframe").locator("#email").wait_for(timeout=5000)
        shot(page, "16-embedded-form")
