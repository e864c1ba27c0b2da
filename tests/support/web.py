"""The web harness: aiosmtpd and uvicorn (port 0) in threads, each test's app plugged in.

`WebServer` gives a test its own store, settings and fake clock on the shared servers, and
stops cleanly afterwards; `conftest.py` turns both into fixtures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import re
import threading
import time
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.config import Settings, load_settings
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import Article, Digest, Subscriber, SubscriberStatus
from newsletter.render import DigestRenderer
from newsletter.store import open_store
from newsletter.store.schema import consents, metadata, subscribers
from newsletter.web import create_app
from tests.support.clock import T0, FakeClock
from tests.support.config import sample_config
from tests.support.smtp_server import SmtpServer

SECRET = "web-test-key-2026"
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/[A-Za-z0-9_.-]+")
HEADLINE = "Receive a daily news update to keep pace with the rapidly evolving REE market"
SCANNER_UA = "Mozilla/5.0 (compatible; SafeLinks-Scanner/1.0; +https://example.net/scan)"


class _LateApp:
    """Lets uvicorn bind port 0 before the app exists: the app's base_url needs that port."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # uvicorn's, once a request came

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


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
    """One test's app on the shared servers: its own store, settings, clock and client.

    `store_url` picks the database (the `store_url` fixture: SQLite or a throwaway PostgreSQL
    schema); without it, a SQLite file under tmp_path. `base_url` is the public address the app
    believes it has (default: the server's own, so mailed links work); `web_options` replace
    fields of `[web]`.
    """

    def __init__(
        self,
        tmp_path: Path,
        servers: Servers,
        keys: tuple[str, ...] = (SECRET,),
        store_url: str | None = None,
        base_url: str | None = None,
        smtputf8: bool = False,
        relay_port: int | None = None,
        **web_options: Any,
    ) -> None:
        self.tmp_path = tmp_path
        self.store_url = store_url
        self.base_url = base_url
        self.smtputf8 = smtputf8
        self.relay_port = relay_port  # another relay than the shared one (SmtpProcess)
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
        relay_port = self.relay_port or self.smtp.port
        settings = load_settings(sample_config(self.tmp_path, relay_port), env)
        web = dataclasses.replace(settings.web, **self.web_options)
        smtp = dataclasses.replace(settings.smtp, smtputf8=self.smtputf8)
        return dataclasses.replace(
            settings,
            base_url=self.base_url or self.url,
            web=web,
            smtp=smtp,
            database_url=self.store_url or settings.database_url,
        )

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.idle()
        self.servers.slot.app = None
        self.store.close()

    # helpers for tests

    def idle(self) -> None:
        """Wait until every sign-up job (store work and mail) that answered has finished."""
        assert self.app.state.signups.wait_idle(10), "background sign-up jobs did not finish"

    def drain(self) -> None:
        """Do the queued sign-ups now, as a shutdown does, on the app's own event loop."""
        loop = self.servers.slot.loop
        assert loop is not None, "no request has reached the app yet"
        asyncio.run_coroutine_threadsafe(self.app.state.signups.drain(), loop).result(15)

    def sign_up(
        self, address: str, *, client_ip: str | None = None, **fields: str
    ) -> httpx.Response:
        """POST the form; `client_ip` poses as another client (X-Forwarded-For from 127.0.0.1
        is trusted, as from a proxy on the same host)."""
        data = {"email": address, "source": "subscribe-page", **fields}
        headers = {"X-Forwarded-For": client_ip} if client_ip else {}
        return self.client.post("/subscribe", data=data, headers=headers)

    def consents(self) -> list[dict[str, Any]]:
        """Every consent record, oldest first, with the address it belongs to."""
        query = sa.select(subscribers.c.email, consents).join(
            subscribers, subscribers.c.id == consents.c.subscriber_id
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(consents.c.id)).all()
        return [dict(row._mapping) for row in rows]

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


def add(web: WebServer, address: str, status: SubscriberStatus) -> Subscriber:
    return web.store.add_subscriber(address, status=status, source="test", now=T0)


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
