"""The issue number: issues of the newsletter sent before the date, plus one (SQLite and
PostgreSQL). An abandoned issue reached nobody and has no number; re-rendering an issue (a dry
run, a re-run) gives it the same number."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

from newsletter.config import load_settings
from newsletter.mail.outbox import OutboxTransport
from newsletter.models import Digest, IssueStatus
from newsletter.pipeline import Run, run_issue
from newsletter.store import SqlStore, open_store
from tests.support.clock import at_send_time
from tests.support.config import SAMPLE, closed_port, make_config

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def digest(n: int) -> Digest:
    return Digest("Subject", "Preheader", "<p>html</p>", "text", (f"a{n}",))


def test_count_issues_counts_earlier_issues_that_went_out(store: SqlStore) -> None:
    assert store.count_issues("ree", date(2026, 11, 28)) == 0
    for day in (20, 21, 22, 23):
        store.create_issue("ree", date(2026, 11, day), NOW, digest(day), NOW)
    store.create_issue("other", date(2026, 11, 21), NOW, digest(99), NOW)
    abandoned = store.get_issue("ree", date(2026, 11, 22))
    assert abandoned is not None
    store.set_issue_status(abandoned.id, IssueStatus.ABANDONED, NOW)
    sent = store.get_issue("ree", date(2026, 11, 20))
    assert sent is not None
    store.set_issue_status(sent.id, IssueStatus.SENT, NOW)
    assert store.count_issues("ree", date(2026, 11, 28)) == 3  # 20 (sent), 21, 23 (sending)
    assert store.count_issues("ree", date(2026, 11, 23)) == 2  # not itself, not later ones
    assert store.count_issues("ree", date(2026, 11, 20)) == 0
    assert store.count_issues("other", date(2026, 11, 28)) == 1


def test_the_digest_shows_the_number_from_the_store(store_url: str, tmp_path: Path) -> None:
    config = make_config(tmp_path, [("REE News", str(SAMPLE))], closed_port())
    settings = load_settings(config, environ={})
    with_history = open_store(store_url)
    try:
        for day in (25, 26, 27):
            cutoff = datetime(2026, 11, day, 7, 0, tzinfo=UTC)
            with_history.create_issue(settings.name, date(2026, 11, day), cutoff, digest(day), NOW)
    finally:
        with_history.close()
    store = open_store(store_url, read_only=True)
    try:
        issue = date(2026, 11, 28)
        clock = at_send_time(settings, issue)
        run = Run(settings, store, OutboxTransport(), clock, dry_run=True)
        _, rendered = asyncio.run(run_issue(run, issue))
    finally:
        store.close()
    assert rendered is not None
    assert "Saturday, 28 November 2026 · No. 4 ·" in rendered.text
    assert "No. 4" in rendered.html
