"""Deferred readers are retried until the deadline; after it the issue is closed, not left open.

Driven through `run_issue` with a test clock, so the deadline passes without waiting.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import IssueStatus
from newsletter.pipeline import Run, run_issue
from tests.support.config import SAMPLE, make_config
from tests.support.feedserver import FeedServer
from tests.support.smtp_server import SmtpServer
from tests.support.world import SECRET, Deployment

VICTIM = "full@example.org"


def test_issue_still_deferring_at_its_deadline_is_closed_by_a_later_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    with FeedServer() as feeds, SmtpServer() as smtp:
        feeds.add_file("/feed/", SAMPLE)
        config = make_config(tmp_path, [("REE News", feeds.url("/feed/"))], smtp.port)
        settings = load_settings(config)
        world = Deployment.on(config, feeds, smtp)
        store = world.store
        world.add("ann@example.org")
        world.add(VICTIM)
        smtp.handler.behaviour = lambda at, rcpt: (
            "452 4.2.2 Mailbox full" if at == "rcpt" and rcpt == VICTIM else None
        )
        now = datetime(2026, 11, 28, 7, 30, tzinfo=UTC)
        run = Run(settings, store, SmtpTransport(settings.smtp), clock=lambda: now)
        asyncio.run(run_issue(run, date(2026, 11, 28)))
        first = store.get_issue(settings.name, date(2026, 11, 28))
        assert first is not None and first.status is IssueStatus.SENDING
        assert world.ledger()[VICTIM] == "deferred"

        now = datetime(2026, 11, 29, 7, 30, tzinfo=UTC)  # past the 24 h retry deadline
        asyncio.run(run_issue(run, date(2026, 11, 29)))
        closed = store.get_issue(settings.name, date(2026, 11, 28))
        assert closed is not None and closed.status is IssueStatus.CLOSED
        assert store.outcome_counts(closed.id) == {"sent": 1, "expired": 1}
        store.close()
