"""A whole deployment for end-to-end tests: feeds over real HTTP, a real store, a real SMTP sink.

`make_config` writes a config.toml that points at them; `World` runs the CLI in-process or as a
subprocess and reads back what the sink received and what the ledger says.
"""

from __future__ import annotations

import email
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa

from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.models import SubscriberStatus
from newsletter.store import SqlStore, open_store
from newsletter.store_schema import deliveries, subscribers
from tests.feedserver import FeedServer
from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "feeds" / "sample-ree-news.xml"
SECRET = "e2e-secret-key"
ISSUE_DATE = "2026-11-28"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_config(
    tmp_path: Path,
    feed_urls: list[tuple[str, str]],
    smtp_port: int,
    *,
    database_url: str | None = None,
    extra: str = "",
    replace: dict[str, str] | None = None,
) -> Path:
    """The shipped config pointed at local servers; `replace` swaps exact lines of it."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    name, url = feed_urls[0]
    text = text.replace(
        'name = "REE News (sample)"\nurl = "feeds/sample-ree-news.xml"',
        f'name = "{name}"\nurl = "{url}"',
    )
    for name, url in feed_urls[1:]:
        text += f'\n[[feeds]]\nname = "{name}"\nurl = "{url}"\n'
    swaps = {
        'host = "localhost"': 'host = "127.0.0.1"',
        "port = 587": f"port = {smtp_port}",
        'tls = "starttls"': 'tls = "none"',
        "timeout = 20 ": "timeout = 3 ",
        'dir = "out"': f'dir = "{tmp_path / "out"}"',
        'templates_dir = "templates"': f'templates_dir = "{ROOT / "templates"}"',
    }
    if database_url:
        swaps['url = "sqlite:///subscribers/subscribers.db"'] = f'url = "{database_url}"'
    swaps.update(replace or {})
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "config.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@dataclass
class World:
    config: Path
    feeds: FeedServer
    smtp: SmtpServer
    store: SqlStore
    ids: dict[str, int] = field(default_factory=dict)

    def add(self, address: str, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> int:
        now = datetime.now(UTC)
        subscriber = self.store.add_subscriber(address, status=status, source="test", now=now)
        if subscriber.status is not status:
            self.store.set_status(subscriber.id, status, now)
        self.ids[address] = subscriber.id
        return subscriber.id

    def send(self, *args: str) -> int:
        return main(["--config", str(self.config), "send", "--force", *args])

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """`newsletter send` in its own process, as cron would start it."""
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
        command = [sys.executable, "-m", "newsletter", "--config", str(self.config), "send"]
        return subprocess.Popen(
            [*command, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def received(self) -> list[EmailMessage]:
        parsed = []
        for item in self.smtp.messages:
            message = email.message_from_bytes(item.data, policy=policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def ledger(self) -> dict[str, str]:
        """address -> delivery status, across all issues (tests send one issue at a time)."""
        query = sa.select(subscribers.c.email, deliveries.c.status).join(
            deliveries, deliveries.c.subscriber_id == subscribers.c.id
        )
        with self.store.engine.connect() as conn:
            return {email: status for email, status in conn.execute(query)}

    def status_of(self, address: str) -> SubscriberStatus:
        found = self.store.get_subscriber(address)
        assert found is not None
        return found.status

    @property
    def settings_name(self) -> str:
        return load_settings(self.config).name


@contextmanager
def deployment(
    tmp_path: Path,
    smtp: SmtpServer,
    readers: list[str],
    *,
    replace: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[World]:
    """The sample feed over HTTP, a store with `readers` active, the config pointing at `smtp`."""
    with FeedServer() as feeds:
        feeds.add_file("/feed/", SAMPLE)
        config = make_config(
            tmp_path,
            [("REE News", feeds.url("/feed/"))],
            smtp.port,
            database_url=database_url,
            replace=replace,
        )
        store = open_store(load_settings(config).database_url)
        world = World(config, feeds, smtp, store)
        for address in readers:
            world.add(address)
        try:
            yield world
        finally:
            store.close()
