"""SIGTERM during a send: the process exits promptly, the ledger matches what the relay got, and
the next run mails exactly the readers that were left.

The process is the real command (`newsletter run --once`, and `newsletter run`, which catches up
at start-up), against a real aiosmtpd relay slowed to `DELAY` per message, a SQLite store and a
feed whose articles are fresh, with the send time set a few minutes in the past, so that the
issue is due now in real time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.models import IssueStatus, SubscriberStatus
from newsletter.store import open_store
from tests.support.clock import T0
from tests.support.config import ROOT, closed_port, make_config
from tests.support.faketime import wall_clock_env
from tests.support.smtp_server import RecordingHandler, SmtpServer
from tests.support.world import SECRET

READERS = [f"reader{n:03d}@example.org" for n in range(300)]
DELAY = 0.08  # seconds per message at the relay: 300 readers on 4 connections take ~6 s
NOW = T0  # the instant the processes start at (their wall clock then runs on)
STOP_AFTER = 40  # messages received before SIGTERM
PROMPT = 3.0  # seconds from SIGTERM to exit; the rest of the send would take ~5 s

pytestmark = pytest.mark.slow  # real processes (or a browser): `make test-fast` skips them


def fresh_feed(path: Path, now: datetime) -> None:
    items = "".join(
        f"<item><title>Fresh rare-earth story {n}</title>"
        f"<link>https://news.example.com/fresh-{n}</link><guid>fresh-{n}</guid>"
        f"<pubDate>{format_datetime(now - timedelta(hours=1, minutes=n))}</pubDate>"
        f"<description>Separation and magnet news, item {n}.</description></item>"
        for n in range(5)
    )
    rss = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Fresh</title>{items}'
    path.write_text(rss + "</channel></rss>", encoding="utf-8")


def due_now_config(tmp_path: Path, smtp_port: int) -> tuple[Path, date]:
    """Send time a few minutes before NOW (UTC): the issue of that date is due, in the window."""
    due = (NOW - timedelta(minutes=5)).replace(second=0, microsecond=0)
    fresh_feed(tmp_path / "fresh.xml", due)
    swaps = {
        'timezone = "Europe/London"': 'timezone = "UTC"',
        'send_time = "07:00"': f'send_time = "{due:%H:%M}"',
        "port = 8000": f"port = {closed_port()}",
    }
    feeds = [("Fresh", str(tmp_path / "fresh.xml"))]
    return make_config(tmp_path, feeds, smtp_port, replace=swaps), due.date()


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """The real command in its own process, its wall clock starting at NOW."""
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET, **wall_clock_env(NOW)}
    command = [sys.executable, "-m", "newsletter", "--config", str(config), *args]
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(process: subprocess.Popen[bytes], timeout: float) -> str:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return (out + err).decode("utf-8", "replace")


def wait_for_messages(smtp: SmtpServer, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while len(smtp.messages) < count:
        assert process.poll() is None, finish(process, 5)
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("command", "stopped_status"),
    [(("run", "--once"), 3), (("run", "--no-web"), 0)],
    ids=["run-once", "run"],
)
def test_sigterm_mid_send_exits_promptly_and_the_next_run_resumes(
    tmp_path: Path, command: tuple[str, ...], stopped_status: int
) -> None:
    handler = RecordingHandler(delay=DELAY)
    with SmtpServer(handler) as smtp:
        config, day = due_now_config(tmp_path, smtp.port)
        settings = load_settings(config)
        store = open_store(settings.database_url)
        try:
            for reader in READERS:
                store.add_subscriber(reader, status=SubscriberStatus.ACTIVE, source="t", now=NOW)
            stop_mid_send(start(config, *command), smtp, stopped_status)
            first = Counter(message.rcpt_tos[0] for message in smtp.messages)
            issue = store.get_issue(settings.name, day)
            assert issue is not None and issue.status is IssueStatus.SENDING
            assert store.outcome_counts(issue.id) == {"sent": sum(first.values())}
            left = {subscriber.email for subscriber in store.pending_recipients(issue.id)}
            assert max(first.values()) == 1 and left == set(READERS) - set(first)
            assert len(left) > len(READERS) // 2, "SIGTERM should have stopped the send early"

            handler.delay = 0.0
            again = start(config, "run", "--once")
            log = finish(again, timeout=60)
            assert again.returncode == 0, log
            assert Counter(message.rcpt_tos[0] for message in smtp.messages) == Counter(READERS)
            done = store.get_issue(settings.name, day)
            assert done is not None and done.status is IssueStatus.SENT
            assert store.outcome_counts(done.id) == {"sent": len(READERS)}
        finally:
            store.close()


def stop_mid_send(process: subprocess.Popen[bytes], smtp: SmtpServer, status: int) -> None:
    try:
        wait_for_messages(smtp, STOP_AFTER, process)
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        log = finish(process, timeout=10)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == status and took < PROMPT, (took, log)
