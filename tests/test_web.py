"""The web app served by uvicorn on 127.0.0.1 (port 0), driven by httpx, mail into aiosmtpd.

This module also holds the harness the other web tests use: `WebServer` starts a real aiosmtpd
server and the app under uvicorn in a thread, with a fake clock the test moves forward, and
stops both afterwards. Here: the sign-up form (enumeration, limits, honeypot), the archive and
the health check.
"""

from __future__ import annotations

import dataclasses
import email
import hashlib
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.config import Settings, load_settings
from newsletter.models import Article, Digest, SubscriberStatus
from newsletter.ratelimit import SlidingWindowLimiter, client_key
from newsletter.render import DigestRenderer
from newsletter.store import SqlStore, open_store
from newsletter.store_schema import metadata
from newsletter.transport import SmtpTransport
from newsletter.web import create_app
from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
SECRET = "web-test-key-2026"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/[A-Za-z0-9_.-]+")
HEADLINE = "Receive a daily news update to keep pace with the rapidly evolving REE market"
SCANNER_UA = "Mozilla/5.0 (compatible; SafeLinks-Scanner/1.0; +https://example.net/scan)"


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class _LateApp:
    """Lets uvicorn bind port 0 before the app exists: the app's base_url needs that port."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


def write_config(tmp_path: Path, smtp_port: int) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace(
        'url = "sqlite:///subscribers/subscribers.db"', f'url = "sqlite:///{tmp_path / "s.db"}"'
    )
    text = text.replace('host = "localhost"', 'host = "127.0.0.1"')
    text = text.replace("port = 587", f"port = {smtp_port}").replace(
        'tls = "starttls"', 'tls = "none"'
    )
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{ROOT / "templates"}"')
    text = text.replace('dir = "out"', f'dir = "{tmp_path / "out"}"')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Servers:
    """aiosmtpd and uvicorn (port 0) in threads, shared by a module's tests: each test plugs
    its own app in (`WebServer`), so no test pays for starting and stopping a server."""

    def __init__(self) -> None:
        self.smtp = SmtpServer()
        self.slot = _LateApp()
        config = uvicorn.Config(
            self.slot,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> Servers:
        self.smtp.__enter__()
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.smtp.__exit__(*exc)


class WebServer:
    """One test's app on the shared servers: its own store, settings, clock and client."""

    def __init__(
        self,
        tmp_path: Path,
        servers: Servers,
        keys: tuple[str, ...] = (SECRET,),
        **web_options: Any,
    ) -> None:
        self.tmp_path = tmp_path
        self.servers = servers
        self.smtp = servers.smtp
        self.url = servers.url
        self.keys = keys
        self.web_options = web_options
        self.clock = FakeClock()

    def __enter__(self) -> WebServer:
        with self.smtp.handler.lock:
            self.smtp.handler.messages.clear()
        self.settings = self._settings()
        self.store = open_store(self.settings.database_url)
        transport = SmtpTransport(self.settings.smtp)
        self.app = create_app(self.settings, self.store, transport, self.clock)
        self.servers.slot.app = self.app
        self.client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)
        return self

    def _settings(self) -> Settings:
        env = {"NEWSLETTER_SECRET_KEY": self.keys[-1]}
        if len(self.keys) > 1:
            env["NEWSLETTER_OLD_SECRET_KEYS"] = ",".join(self.keys[:-1])
        settings = load_settings(write_config(self.tmp_path, self.smtp.port), env)
        web = dataclasses.replace(settings.web, **self.web_options)
        return dataclasses.replace(settings, base_url=self.url, web=web)

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.idle()
        self.servers.slot.app = None
        self.store.close()

    # helpers for tests

    def idle(self) -> None:
        """Wait until every sign-up job (store work and mail) that answered has finished."""
        assert self.app.state.jobs.wait_idle(10), "background sign-up jobs did not finish"

    def sign_up(self, address: str, **fields: str) -> httpx.Response:
        data = {"email": address, "source": "subscribe-page", **fields}
        return self.client.post("/subscribe", data=data)

    def mails(self) -> list[EmailMessage]:
        parsed = []
        for item in self.smtp.messages:
            message = email.message_from_bytes(item.data, policy=policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def confirm_path(self, index: int = -1) -> str:
        """The path of the confirm link in the index-th mail received."""
        text = text_part(self.mails()[index])
        found = CONFIRM_LINK.search(text)
        assert found, text
        assert found.group(0).startswith(self.url)
        return found.group(0).removeprefix(self.url)

    def status(self, address: str) -> SubscriberStatus | None:
        found = self.store.get_subscriber(address)
        return None if found is None else found.status

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: what "the store is unchanged" compares."""
        with self.store.engine.connect() as conn:
            return {
                table.name: sorted(map(tuple, conn.execute(sa.select(table))), key=repr)
                for table in metadata.sorted_tables
                if sa.inspect(conn).has_table(table.name)
            }


def text_part(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def add(web: WebServer, address: str, status: SubscriberStatus) -> int:
    return web.store.add_subscriber(address, status=status, source="test", now=T0).id


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


def test_the_per_ip_limit_answers_429_with_retry_after(tmp_path: Path, servers: Servers) -> None:
    with WebServer(tmp_path, servers, ip_limit_per_hour=3) as web:
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
    assert limiter.hit("a", T0) and limiter.hit("a", T0) and not limiter.hit("a", T0)
    assert limiter.retry_after("a", T0) == 3600 and limiter.retry_after("b", T0) == 0
    assert limiter.hit("b", T0)
    assert not limiter.hit("c", T0)  # full and nobody quiet: a new client is refused
    later = T0 + timedelta(hours=1)
    assert limiter.hit("c", later) and limiter.hit("a", later)  # quiet ones forgotten


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


def article(n: int, day: date) -> Article:
    when = datetime(day.year, day.month, day.day, 6, 0, tzinfo=UTC)
    return Article(
        id=f"a{n}",
        title=f"Lynas expands heavy rare-earth output ({n})",
        link=f"https://ree-news.example.com/{n}",
        author="",
        published=when,
        summary_html="",
        summary_text="Separation capacity grows in Malaysia.",
        content_html="",
        source="REE News",
    )


def store_issue(web: WebServer, day: date, n: int = 1, *, render: bool = True) -> None:
    """An issue as the pipeline stores it; without `render`, a cheap stand-in digest."""
    if render:
        digest = DigestRenderer(web.settings).render([article(n, day)], day)
    else:
        digest = Digest(f"REE Daily, {day}: Headline {n}", "pre", "<p>x</p>", "x", (f"a{n}",))
    cutoff = datetime(day.year, day.month, day.day, 7, 0, tzinfo=UTC)
    web.store.create_issue(web.settings.name, day, cutoff, digest, T0)


def test_an_archived_issue_has_no_personal_links(web: WebServer) -> None:
    store_issue(web, date(2026, 11, 27))
    page = web.client.get("/archive/2026-11-27")
    assert page.status_code == 200
    assert "public" in page.headers["cache-control"]
    html = page.text
    assert "__READER_EMAIL__" not in html and "__UNSUBSCRIBE_URL__" not in html
    assert "/u/" not in html
    assert "with your email address." in html
    assert f'href="{web.url}/unsubscribe"' in html
    assert f'href="{web.url}/subscribe"' in html  # the banner
    assert "Lynas expands heavy rare-earth output (1)" in html
    help_page = web.client.get("/unsubscribe")
    assert help_page.status_code == 200 and "personal" in help_page.text
    for missing in ("/archive/2026-11-26", "/archive/yesterday", "/archive/2026-13-01"):
        assert web.client.get(missing).status_code == 404


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
    settings = load_settings(write_config(tmp_path, 25), {})
    store: SqlStore = open_store(settings.database_url)
    try:
        with pytest.raises(ValueError, match="NEWSLETTER_SECRET_KEY"):
            create_app(settings, store, None)  # type: ignore[arg-type]
    finally:
        store.close()
