"""A whole deployment for end-to-end tests: feeds over real HTTP, a real store, a real SMTP sink.

`Deployment` runs the CLI in-process or as a subprocess, on the test's clock (a few minutes
after the issue's send time), and reads back what the sink received and what the ledger says.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa

from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.models import SubscriberStatus
from newsletter.store import SqlStore, open_store
from newsletter.store.schema import deliveries, subscribers
from tests.support.clock import FakeClock, at_send_time
from tests.support.config import ROOT, SAMPLE, make_config
from tests.support.faketime import wall_clock_env
from tests.support.feedserver import FeedServer
from tests.support.smtp_server import SmtpServer

SECRET = "e2e-secret-key"
ISSUE_DATE = "2026-11-28"


@dataclass
class Deployment:
    config: Path
    feeds: FeedServer
    smtp: SmtpServer
    store: SqlStore
    clock: FakeClock
    ids: dict[str, int] = field(default_factory=dict)
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def on(cls, config: Path, feeds: FeedServer, smtp: SmtpServer) -> Deployment:
        """The deployment a config describes, on a clock just after ISSUE_DATE's send time."""
        settings = load_settings(config)
        store = open_store(settings.database_url)
        clock = at_send_time(settings, date.fromisoformat(ISSUE_DATE))
        return cls(config, feeds, smtp, store, clock)

    def add(self, address: str, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> int:
        now = self.clock()
        subscriber = self.store.add_subscriber(address, status=status, source="test", now=now)
        if subscriber.status is not status:
            self.store.set_status(subscriber.id, status, now)
        self.ids[address] = subscriber.id
        return subscriber.id

    def send(self, *args: str) -> int:
        return main(["--config", str(self.config), "send", "--force", *args], clock=self.clock)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """`newsletter send` in its own process, as cron would start it, on the test's clock."""
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET, **wall_clock_env(self.clock())}
        command = [sys.executable, "-m", "newsletter", "--config", str(self.config), "send"]
        process = subprocess.Popen(
            [*command, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.spawned.append(process)
        return process

    def stop_spawned(self) -> None:
        """Kill what a failed test left running (a frozen or waiting sender), and reap it."""
        for process in self.spawned:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)

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
    since: datetime | None = None,
) -> Iterator[Deployment]:
    """The sample feed over HTTP, a store with `readers` active, the config pointing at `smtp`.

    The readers sign up at `since` (default: the clock's start, just after ISSUE_DATE's send
    time); an issue made before they confirmed is not theirs.
    """
    with FeedServer() as feeds:
        feeds.add_file("/feed/", SAMPLE)
        config = make_config(
            tmp_path,
            [("REE News", feeds.url("/feed/"))],
            smtp.port,
            database_url=database_url,
            replace=replace,
        )
        world = Deployment.on(config, feeds, smtp)
        store = world.store
        start = world.clock()
        world.clock.now = since or start
        for address in readers:
            world.add(address)
        world.clock.now = start
        try:
            yield world
        finally:
            world.stop_spawned()
            store.close()
