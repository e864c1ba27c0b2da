"""The web app served by uvicorn on 127.0.0.1 (port 0), driven by httpx, mail into aiosmtpd.

The harness (`tests.support.web`) starts a real aiosmtpd server and the app under uvicorn in a
thread, with a fake clock the test moves forward. Here: the sign-up form (enumeration, limits,
honeypot), the archive and the health check.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.clean.html import clean_html
from newsletter.config import load_settings
from newsletter.models import Digest, SubscriberStatus
from newsletter.render import DigestRenderer
from newsletter.store import SqlStore, open_store
from newsletter.web import create_app
from newsletter.web.ratelimit import SlidingWindowLimiter, client_key
from tests.support.clock import T0, FakeClock
from tests.support.config import sample_config
from tests.support.web import HEADLINE, Servers, WebServer, add, article, store_issue

# the form


def test_subscribe_page_shows_the_form_with_a_hidden_honeypot(web: WebServer) -> None:
    for path in ("/", "/subscribe", "/embed"):
        page = web.client.get(path)
        assert page.status_code == 200
        html = page.text
        assert HEADLINE in html
        assert f'<form class="signup" method="post" action="{web.url}/subscribe"' in html
        assert 'name="website"' in html and 'tabindex="-1"' in html
        assert "<script" not in html
    assert "frame-ancestors 'none'" in web.client.get("/").headers["content-security-policy"]
    assert "frame-ancestors *" in web.client.get("/embed").headers["content-security-policy"]
    snippet = web.client.get("/embed/snippet")
    assert snippet.headers["content-type"].startswith("text/plain")
    assert f'action="{web.url}/subscribe"' in snippet.text and 'name="website"' in snippet.text


def test_sign_up_sends_one_confirmation_and_records_the_request(web: WebServer) -> None:
    page = web.sign_up("  Reader@Example.ORG ", consent_version="2026-11-v1")
    assert page.status_code == 200
    assert "Check your inbox" in page.text and "reader@example.org" in page.text
    web.idle()
    assert web.status("reader@example.org") is SubscriberStatus.PENDING
    [received] = web.smtp.messages
    assert received.rcpt_tos == ("reader@example.org",)
    assert received.mail_from == web.settings.from_address
    message = web.mails()[0]
    assert message["To"] == "reader@example.org"
    assert web.confirm_path().startswith("/confirm/")
    exported = web.store.export_subscriber("reader@example.org")
    assert exported is not None
    [consent] = exported["consents"]
    assert consent["request_ip"] == "127.0.0.1"
    assert consent["request_user_agent"].startswith("python-httpx/")
    assert consent["source"] == "subscribe-page"
    assert consent["consent_version"] == "2026-11-v1"
    assert consent["requested_at"] == T0.isoformat()
    assert consent["mail_sha256"] == hashlib.sha256(received.data).hexdigest()
    assert consent["mail_message_id"] == message["Message-ID"]
    assert consent["confirmed_at"] is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [("no-at-sign", "must have an @-sign"), ("two@@example.org", "invalid characters")],
)
def test_an_invalid_address_gets_the_form_again_with_the_reason(
    web: WebServer, address: str, reason: str
) -> None:
    page = web.sign_up(address)
    assert page.status_code == 422
    assert reason in page.text and 'role="alert"' in page.text
    assert 'aria-invalid="true"' in page.text
    web.idle()
    assert web.snapshot()["subscribers"] == [] and web.smtp.messages == []


def test_the_answer_is_the_same_for_new_pending_and_active_addresses(web: WebServer) -> None:
    add(web, "pending@example.org", SubscriberStatus.PENDING)
    add(web, "active@example.org", SubscriberStatus.ACTIVE)
    answers = {}
    for address in ("new@example.org", "pending@example.org", "active@example.org"):
        page = web.sign_up(address)
        headers = {k: v for k, v in page.headers.items() if k not in ("date", "content-length")}
        answers[address] = (page.status_code, headers, page.text.replace(address, "ADDRESS"))
    assert len(set(map(repr, answers.values()))) == 1
    web.idle()
    assert sorted(m.rcpt_tos[0] for m in web.smtp.messages) == [
        "new@example.org",
        "pending@example.org",
    ]
    assert web.status("active@example.org") is SubscriberStatus.ACTIVE


def test_repeated_sign_ups_cannot_flood_an_inbox(web: WebServer) -> None:
    """Resend window (10 min) and daily cap (3) hold however often the form is posted."""
    minutes = [*range(0, 120, 5), 23 * 60 + 55]  # every 5 minutes, then just before a day
    for minute in minutes:
        web.clock.now = T0 + timedelta(minutes=minute)
        assert web.sign_up("victim@example.org").status_code == 200
        web.idle()
    sent = [m for m in web.smtp.messages if m.rcpt_tos == ("victim@example.org",)]
    assert len(sent) == web.settings.web.address_limit_per_day == 3
    web.clock.now = T0 + timedelta(days=1, minutes=1)
    web.sign_up("victim@example.org")
    web.idle()
    assert len(web.smtp.messages) == 4


def test_one_more_mail_only_after_the_resend_window(web: WebServer) -> None:
    web.sign_up("ann@example.org")
    web.sign_up("ann@example.org")
    web.idle()
    assert len(web.smtp.messages) == 1
    web.clock.advance(minutes=web.settings.web.resend_after_minutes + 1)
    web.sign_up("ann@example.org")
    web.idle()
    assert len(web.smtp.messages) == 2


def test_the_per_ip_limit_answers_429_with_retry_after(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url, ip_limit_per_hour=3) as web:
        for n in range(3):
            assert web.sign_up(f"r{n}@example.org").status_code == 200
        refused = web.sign_up("r3@example.org")
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        assert "try again" in refused.text
        web.idle()
        assert len(web.smtp.messages) == 3 and web.status("r3@example.org") is None
        web.clock.advance(hours=1)
        assert web.sign_up("r3@example.org").status_code == 200


def test_client_keys_and_the_limiter_bounds() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
    limiter = SlidingWindowLimiter(2, timedelta(hours=1), max_keys=2)
    assert limiter.hit("a", T0) and limiter.hit("a", T0 + timedelta(minutes=10))
    assert not limiter.hit("a", T0 + timedelta(minutes=20))
    assert limiter.retry_after("a", T0 + timedelta(minutes=20)) == 40 * 60  # the first hit ages out
    assert limiter.retry_after("b", T0) == 0
    assert limiter.hit("b", T0 + timedelta(minutes=21))
    assert limiter.hit("a", T0 + timedelta(minutes=60)) is True  # the hit of T0 left the window
    # full: a new client is taken, and the one seen longest ago ("b") is forgotten, not "a"
    assert limiter.hit("c", T0 + timedelta(minutes=61)) and len(limiter) == 2
    assert limiter.retry_after("b", T0 + timedelta(minutes=61)) == 0
    assert not limiter.hit("a", T0 + timedelta(minutes=62))
    assert limiter.forgotten_active == 1


def test_a_filled_honeypot_gets_the_polite_answer_and_nothing_happens(web: WebServer) -> None:
    page = web.sign_up("bot-target@example.org", website="https://spam.example")
    assert page.status_code == 200 and "Check your inbox" in page.text
    web.idle()
    assert web.snapshot()["subscribers"] == [] and web.smtp.messages == []


def test_security_headers_and_body_limit(web: WebServer) -> None:
    page = web.client.get("/subscribe")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]
    huge = web.client.post("/subscribe", data={"email": "a@example.org", "x": "y" * 100_000})
    assert huge.status_code == 413
    assert web.client.put("/subscribe").status_code == 405
    missing = web.client.get("/no/such/page")
    assert missing.status_code == 404 and "Page not found" in missing.text


# archive and health


def test_an_archived_issue_has_no_personal_links(web: WebServer) -> None:
    store_issue(web, date(2026, 11, 27))
    page = web.client.get("/archive/2026-11-27")
    assert page.status_code == 200
    assert "public" in page.headers["cache-control"]
    html = page.text
    assert "__READER_EMAIL__" not in html and "__UNSUBSCRIBE_URL__" not in html
    assert "__PREFERENCES_URL__" not in html and "/preferences/" not in html
    assert "/u/" not in html
    assert html.count(f'href="{web.url}/unsubscribe"') == 1  # no preferences: [weekly] is off
    assert f'href="{web.url}/subscribe"' in html  # the banner
    assert "Lynas expands heavy rare-earth output (1)" in html
    help_page = web.client.get("/unsubscribe")
    assert help_page.status_code == 200 and "personal" in help_page.text
    for missing in ("/archive/2026-11-26", "/archive/yesterday", "/archive/2026-13-01"):
        assert web.client.get(missing).status_code == 404


INBOX_ONLY = ("View in your browser", "Was this forwarded to you?", "You receive this because")


def archived(web: WebServer, digest: Digest, day: date = date(2026, 11, 27)) -> str:
    """The public page of `digest`, stored as the pipeline stores an issue."""
    web.store.create_issue(
        web.settings.name, day, datetime(2026, 11, 27, 7, tzinfo=UTC), digest, T0
    )
    return web.client.get(f"/archive/{day.isoformat()}").text


def test_the_archive_page_leaves_out_what_only_makes_sense_in_an_inbox(web: WebServer) -> None:
    day = date(2026, 11, 27)
    digest = DigestRenderer(web.settings).render([article(1, day)], day)
    assert all(line in digest.html for line in INBOX_ONLY)  # the mail has them
    html = archived(web, digest)
    assert not [line for line in INBOX_ONLY if line in html]
    assert "email-only" not in html
    # what a visitor still needs: the story, who sends it and from where, how to subscribe
    assert "Lynas expands heavy rare-earth output (1)" in html
    assert "REE Daily brings you the day's rare-earth news from" in html
    assert web.settings.postal_address in html
    assert f'href="{web.url}/subscribe"' in html


def test_feed_text_cannot_hide_itself_from_the_archive_with_the_markers(web: WebServer) -> None:
    day = date(2026, 11, 27)
    hostile = "<p>Before<!--/email-only--></p><p>Still shown</p><p><!--email-only-->After</p>"
    as_text = "Before <!--/email-only--> Still shown <!--email-only--> After"
    story = replace(
        article(1, day), summary_html=clean_html(hostile), content_html=clean_html(hostile),
        summary_text=as_text, title=as_text,
    )  # fmt: skip
    digest = DigestRenderer(web.settings).render([story], day)
    plain = DigestRenderer(web.settings).render([article(1, day)], day)
    assert digest.html.count("<!--email-only-->") == plain.html.count("<!--email-only-->")
    html = archived(web, digest)
    assert "Before" in html and "Still shown" in html and "After" in html
    assert "View in your browser" not in html  # the template's own marks still work


def test_the_archive_index_lists_issues_newest_first_in_pages(web: WebServer) -> None:
    first = date(2026, 10, 1)
    for n in range(33):
        store_issue(web, first + timedelta(days=n), n, render=False)
    page = web.client.get("/archive")
    assert page.status_code == 200
    links = re.findall(r'href="[^"]+/archive/(\d{4}-\d\d-\d\d)"', page.text)
    assert len(links) == 30 and links[0] == "2026-11-02" and links[-1] == "2026-10-04"
    assert "Monday, 2 November 2026" in page.text
    older = re.search(r'href="([^"]+/archive\?before=2026-10-04)"', page.text)
    assert older
    rest = web.client.get(older.group(1).removeprefix(web.url)).text
    assert re.findall(r"/archive/(\d{4}-\d\d-\d\d)", rest) == [
        "2026-10-03",
        "2026-10-02",
        "2026-10-01",
    ]
    assert "Older issues" not in rest and "Newest issues" in rest


def test_health_reports_the_store(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = web.client.get("/healthz")
    assert ok.status_code == 200 and ok.json() == {"status": "ok", "store": "ok"}

    def down() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(web.store, "ping", down)
    failed = web.client.get("/healthz")
    assert failed.status_code == 503 and failed.json()["status"] == "error"


def test_create_app_refuses_the_public_dry_run_key(tmp_path: Path) -> None:
    settings = load_settings(sample_config(tmp_path, 25), {})
    store: SqlStore = open_store(settings.database_url)
    try:
        with pytest.raises(ValueError, match="NEWSLETTER_SECRET_KEY"):
            create_app(settings, store, None, FakeClock())  # type: ignore[arg-type]
    finally:
        store.close()
