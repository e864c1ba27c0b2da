"""/admin against the real server: off by default, a password hash to get in, a rate-limited
login, a fresh session id at login (no fixation), CSRF-checked POSTs, nothing cached, no script.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from newsletter.config.operator import AdminConfig
from newsletter.models import DeliveryStatus, FeedReport, Outcome, SubscriberStatus
from tests.support.clock import T0
from tests.support.operator import (
    ADMIN_HASH,
    ADMIN_PASSWORD,
    ISSUE_DAY,
    OperatorServer,
    post_sns,
    sent_reader,
    ses_complaint,
    ses_notification,
)
from tests.support.web import Servers, WebServer, store_issue

PAGES = ("", "/reports", "/feeds", f"/issues/{ISSUE_DAY}", f"/issues/{ISSUE_DAY}/preview")


@pytest.fixture
def op(tmp_path: Path, servers: Servers) -> Iterator[OperatorServer]:
    with OperatorServer(tmp_path, servers) as server:
        yield server


def log_in(op: OperatorServer, password: str = ADMIN_PASSWORD, **headers: str) -> httpx.Response:
    return op.client.post("/admin/login", data={"password": password}, headers=headers)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_everything_operator_is_off_by_default(web: WebServer) -> None:
    for path in ("/admin", "/admin/login", "/metrics"):
        assert web.client.get(path).status_code == 404
    for provider in ("ses", "postmark", "mailgun", "sendgrid"):
        assert web.client.post(f"/webhooks/{provider}", content=b"{}").status_code == 404


def test_every_page_needs_a_login_and_is_never_cached(op: OperatorServer) -> None:
    sent_reader(op)
    for path in PAGES:
        answer = op.client.get(f"/admin{path}")
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"{op.url}/admin/login"
        assert answer.headers["cache-control"] == "no-store"
    form = op.client.get("/admin/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    assert form.headers["cache-control"] == "no-store"
    assert "script-src" not in form.headers["content-security-policy"]
    assert "default-src 'none'" in form.headers["content-security-policy"]


def test_login_sets_a_strict_cookie_and_shows_every_page(op: OperatorServer) -> None:
    sent_reader(op)
    assert log_in(op, "wrong password").status_code == 401
    assert "ree_admin" not in op.client.cookies
    answer = log_in(op)
    assert answer.status_code == 303 and answer.headers["location"] == f"{op.url}/admin"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # base_url is http here; an https one gets Secure
    for path in PAGES:
        page = op.client.get(f"/admin{path}")
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text.lower()
    overview = op.client.get("/admin").text
    assert overview.count("<svg") == 7 and "Messages sent per issue" in overview
    assert f'href="{op.url}/admin/issues/{ISSUE_DAY}"' in overview


def test_a_planted_session_id_never_becomes_a_login(op: OperatorServer) -> None:
    planted = "attacker-chosen-session-id"
    op.client.cookies.set("ree_admin", planted, path="/admin")
    assert op.client.get("/admin").status_code == 303
    answer = log_in(op)
    issued = answer.cookies["ree_admin"]
    assert issued != planted and len(issued) >= 40
    with httpx.Client(base_url=op.url, follow_redirects=False) as attacker:
        attacker.cookies.set("ree_admin", planted, path="/admin")
        assert attacker.get("/admin").status_code == 303
    again = log_in(op)  # logging in again replaces the session: the old id is dead
    assert again.cookies["ree_admin"] != issued
    with httpx.Client(base_url=op.url, follow_redirects=False) as old:
        old.cookies.set("ree_admin", issued, path="/admin")
        assert old.get("/admin").status_code == 303


def test_failed_logins_are_limited_per_client(op: OperatorServer) -> None:
    for _ in range(5):
        assert log_in(op, "guess").status_code == 401
    blocked = log_in(op)  # even the right password, while blocked
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 3000
    assert "ree_admin" not in blocked.cookies
    other = log_in(op, **{"X-Forwarded-For": "198.51.100.7"})  # another client is not blocked
    assert other.status_code == 303
    op.clock.advance(hours=1, seconds=1)
    assert log_in(op).status_code == 303


def test_a_burst_of_guesses_sent_at_once_gets_no_more_than_the_limit(op: OperatorServer) -> None:
    """Each attempt counts as it starts, not after the slow password check: twelve guesses in
    flight at once get five answers and seven 429s, and one IPv6 host is one /64."""
    clients = [f"2001:db8:1:2::{n:x}" for n in range(12)]  # one /64, a new address each time

    def guess(client: str) -> int:
        with httpx.Client(base_url=op.url, follow_redirects=False) as own:
            headers = {"X-Forwarded-For": client, "Origin": op.url}
            return own.post("/admin/login", data={"password": "guess"}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        codes = sorted(pool.map(guess, clients))
    assert codes == [401] * 5 + [429] * 7
    assert log_in(op, **{"X-Forwarded-For": "2001:db8:1:2::ffff"}).status_code == 429
    assert log_in(op, **{"X-Forwarded-For": "2001:db8:1:3::1"}).status_code == 303  # next /64


def test_logout_needs_the_session_csrf_token_and_ends_the_session(op: OperatorServer) -> None:
    log_in(op)
    page = op.client.get("/admin").text
    token = csrf_of(page)
    assert op.client.post("/admin/logout").status_code == 403
    assert op.client.post("/admin/logout", data={"csrf": "forged"}).status_code == 403
    assert op.client.get("/admin").status_code == 200  # still logged in
    session = op.client.cookies["ree_admin"]
    answer = op.client.post("/admin/logout", data={"csrf": token})
    assert answer.status_code == 303 and answer.headers["location"].endswith("/admin/login?out=1")
    assert "You are logged out." in op.client.get(answer.headers["location"]).text
    assert "You are logged out." not in op.client.get("/admin/login").text
    with httpx.Client(base_url=op.url, follow_redirects=False) as replay:
        replay.cookies.set("ree_admin", session, path="/admin")
        assert replay.get("/admin").status_code == 303


def test_a_login_posted_from_another_site_is_refused(op: OperatorServer) -> None:
    for origin in ("https://evil.example", "null", op.url.replace("127.0.0.1", "localhost")):
        answer = log_in(op, Origin=origin)
        assert answer.status_code == 403 and "ree_admin" not in answer.cookies
    assert log_in(op, Origin=op.url).status_code == 303


def test_sessions_expire(tmp_path: Path, servers: Servers) -> None:
    config = AdminConfig(password_hash=ADMIN_HASH, session_hours=1)
    with OperatorServer(tmp_path, servers, admin=config) as op:
        log_in(op)
        assert op.client.get("/admin").status_code == 200
        op.clock.advance(minutes=61)
        assert op.client.get("/admin").status_code == 303


def test_the_pages_show_rates_warnings_reports_and_feed_health(op: OperatorServer) -> None:
    readers = [sent_reader(op, f"r{n}@example.org", n) for n in range(1, 4)]
    post_sns(op, ses_notification(ses_complaint(readers[0]), op.clock()))
    store_issue(op, date(2026, 11, 26), 2, render=False)
    op.store.record_feed_reports(
        [FeedReport("REE News", "https://ree-news.example.com/feed/", False, error="HTTP 503")],
        op.clock() - timedelta(hours=1),
    )
    log_in(op)
    overview = op.client.get("/admin").text
    assert "complaint rate 33.33% is over the 0.3% limit" in overview
    assert "1 in 30 days" in overview  # the complaints chart's total
    issue = op.client.get(f"/admin/issues/{ISSUE_DAY}").text
    assert "33.33%" in issue and '>3</div><div class="l">sent' in issue
    # Refused during the send: one dead mailbox counts in the hard-bounce rate, a policy
    # refusal does not (the rate is readers whose mailbox does not exist).
    sent_issue = op.store.get_issue(op.settings.name, ISSUE_DAY)
    assert sent_issue is not None
    for address, reply in (
        ("gone@example.org", "RCPT: 550 5.1.1 <gone@example.org>: user unknown"),
        ("policy@example.org", "RCPT: 550 5.7.1 message refused as spam"),
    ):
        who = op.store.add_subscriber(address, status=SubscriberStatus.ACTIVE, source="t", now=T0)
        refused = Outcome(DeliveryStatus.FAILED, reply)
        op.store.record_outcome(sent_issue.id, who.id, refused, op.clock())
    issue = op.client.get(f"/admin/issues/{ISSUE_DAY}").text
    assert "plus 1 refused during the send as no such mailbox" in issue
    assert "20.00%" in issue  # (1 refused + 0 reported) / (3 sent + 2 failed)
    reports = op.client.get("/admin/reports").text
    assert "unsubscribed" in reports and "message-id" in reports
    assert "r1@example.org" not in reports  # no address is stored with a report
    feeds = op.client.get("/admin/feeds").text
    assert "HTTP 503" in feeds and "never" in feeds
    preview = op.client.get(f"/admin/issues/{ISSUE_DAY}/preview")
    assert preview.status_code == 200 and "<p>x</p>" in preview.text
    assert op.client.get("/admin/issues/2026-02-30").status_code == 404
    assert op.client.get("/admin/issues/2020-01-01").status_code == 404


def test_a_bad_password_hash_in_the_config_is_refused(tmp_path: Path) -> None:
    from newsletter.config import load_settings
    from newsletter.errors import ConfigError
    from tests.support.config import sample_config

    path = sample_config(tmp_path, 25)
    text = path.read_text().replace('password_hash = ""', 'password_hash = "hunter2"')
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"admin\.password_hash.*hash-password"):
        load_settings(path, {})
    env = {"NEWSLETTER_ADMIN_PASSWORD_HASH": "$scrypt$nope"}
    with pytest.raises(ConfigError, match="NEWSLETTER_ADMIN_PASSWORD_HASH"):
        load_settings(sample_config(tmp_path, 25), env)
