"""End to end: feeds over real HTTP, a real SQLite store, mail into a real aiosmtpd server.

Every received message is parsed with the `email` package and checked on its bytes.
"""

from __future__ import annotations

import email
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.models import SubscriberStatus
from newsletter.tokens import Tokens
from tests.support.config import SAMPLE, closed_port, make_config
from tests.support.feedserver import FeedServer
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, Deployment

ACTIVE = ["alice@example.org", "bob@example.net", "chen.li@example.com"]
BROKEN_FEED = b"<?xml version='1.0'?><rss><channel><item><title>unterminated"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    with FeedServer() as feeds, SmtpServer() as smtp:
        feeds.add_file("/feed/", SAMPLE, etag='"sample-1"')
        feeds.add("/broken.xml", BROKEN_FEED)
        urls = [
            ("REE News", feeds.url("/feed/")),
            ("Broken", feeds.url("/broken.xml")),
            ("Unreachable", f"http://127.0.0.1:{closed_port()}/feed"),
        ]
        config = make_config(tmp_path, urls, smtp.port)
        world = Deployment.on(config, feeds, smtp)
        store = world.store
        for address in ACTIVE:
            world.add(address)
        world.add("pending@example.org", SubscriberStatus.PENDING)
        world.add("gone@example.org", SubscriberStatus.UNSUBSCRIBED)
        yield world
        store.close()


def test_send_delivers_one_correct_copy_to_each_active_subscriber(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.send("--date", ISSUE_DATE) == 0
    out = capsys.readouterr().out
    assert re.search(r"feed FAILED\s+Broken: .+\(skipped\)", out)
    assert re.search(r"feed FAILED\s+Unreachable: .+\(skipped\)", out)
    messages = world.received()
    assert Counter(m["To"] for m in messages) == Counter(ACTIVE)
    assert len({m["Message-ID"] for m in messages}) == len(ACTIVE)
    tokens = Tokens([SECRET], timedelta(days=7), world.clock)
    for message in messages:
        reader = world.store.get_subscriber(str(message["To"]))
        assert reader is not None
        check_message(message, reader.public_id, tokens)
    assert all(m.rcpt_tos[0] == m.rcpt_tos[0].lower() for m in world.smtp.messages)


def check_message(message: EmailMessage, public_id: str, tokens: Tokens) -> None:
    assert str(message["Subject"]).startswith("REE Daily, 28 Nov 2026")
    assert message["From"].addresses[0].addr_spec == "daily@ree-news.example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"].endswith("<daily.ree-news.example.com>")
    https = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    assert https is not None
    url = https.group(1)
    assert url.startswith("https://ree-news.example.com/newsletter/u/")
    assert tokens.read_unsubscribe(url.rsplit("/", 1)[1]).public_id == public_id
    plain, html = (part.get_content() for part in message.iter_parts())
    for body in (plain, html):
        assert "12 Foundry Lane" in body
        assert url in body
        assert str(message["To"]) in body
    assert re.search(rf'<a[^>]+href="{re.escape(url)}"[^>]*>[^<]*Unsubscribe', html, re.I)
    assert "<script" not in html.lower()


def test_second_send_on_the_same_day_sends_nothing_new(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.send("--date", ISSUE_DATE) == 0
    first = len(world.smtp.messages)
    assert world.send("--date", ISSUE_DATE) == 0
    assert len(world.smtp.messages) == first == len(ACTIVE)
    assert "already sent" in capsys.readouterr().out


def database_fingerprint(config: Path) -> str:
    url = load_settings(config).database_url
    return hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()


def test_dry_run_sends_nothing_changes_nothing_and_writes_the_digest(
    world: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = database_fingerprint(world.config)
    assert world.send("--dry-run", "--date", ISSUE_DATE) == 0
    out = capsys.readouterr().out
    assert world.smtp.messages == []
    assert database_fingerprint(world.config) == before
    settings = load_settings(world.config)
    assert world.store.get_issue(settings.name, datetime(2026, 11, 28).date()) is None
    assert world.store.get_feed_state(world.feeds.url("/feed/")) is None
    assert f"recipients: {len(ACTIVE)}" in out
    assert re.search(r"articles: \d+", out) and re.search(r"message size: [\d,]+ bytes", out)
    folder = tmp_path / "out" / ISSUE_DATE
    eml = email.message_from_bytes((folder / "digest.eml").read_bytes(), policy=policy.default)
    assert [p.get_content_type() for p in eml.iter_parts()] == ["text/plain", "text/html"]
    assert "12 Foundry Lane" in (folder / "digest.txt").read_text(encoding="utf-8")
    assert "<table" in (folder / "digest.html").read_text(encoding="utf-8")
    assert "__UNSUBSCRIBE_URL__" not in (folder / "digest.html").read_text(encoding="utf-8")
    # Made out to a stand-in: no real reader's address or unsubscribe link is left on disk.
    assert eml["To"] == "reader@example.com"
    for name in ("digest.eml", "digest.html", "digest.txt"):
        written = (folder / name).read_bytes()
        assert not any(address.encode() in written for address in ACTIVE), name


def test_test_copy_goes_to_one_address_only_and_stores_nothing(world: Deployment) -> None:
    before = database_fingerprint(world.config)
    assert world.send("--to", "Editor@Example.org", "--date", ISSUE_DATE) == 0
    assert [m.rcpt_tos for m in world.smtp.messages] == [("editor@example.org",)]
    assert database_fingerprint(world.config) == before


def test_an_article_sent_before_never_returns_even_if_redated(world: Deployment) -> None:
    assert world.send("--date", "2026-11-27") == 0
    first_ids = set(issue_articles(world, "2026-11-27"))
    assert first_ids
    world.feeds.add("/feed/", redate(SAMPLE, "Fri, 27 Nov 2026 20:00:00 +0000"), etag='"v2"')
    assert world.send("--date", ISSUE_DATE) == 0
    second_ids = set(issue_articles(world, ISSUE_DATE))
    assert second_ids and not first_ids & second_ids


def issue_articles(world: Deployment, day: str) -> tuple[str, ...]:
    settings = load_settings(world.config)
    issue = world.store.get_issue(settings.name, datetime.fromisoformat(day).date())
    assert issue is not None
    return issue.digest.article_ids


def test_empty_day_sends_nothing_and_says_so(
    world: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.send("--date", "2027-03-01") == 0
    assert world.smtp.messages == []
    assert "empty day" in capsys.readouterr().out


def test_real_send_without_signing_key_stops_before_anything(
    world: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    assert world.send("--date", ISSUE_DATE) == 1
    assert "NEWSLETTER_SECRET_KEY" in capsys.readouterr().err
    assert world.smtp.messages == []


def test_feed_validators_are_kept_only_when_nothing_waits_past_the_cutoff(
    world: Deployment,
) -> None:
    assert world.send("--date", "2026-11-27") == 0
    # The sample holds articles after the 27th's cutoff: a stored ETag could hide them for good.
    assert world.store.get_feed_state(world.feeds.url("/feed/")) is None
    world.feeds.add("/feed/", redate(SAMPLE, "Fri, 27 Nov 2026 20:00:00 +0000"), etag='"v2"')
    assert world.send("--date", ISSUE_DATE) == 0
    state = world.store.get_feed_state(world.feeds.url("/feed/"))
    assert state is not None and state.etag == '"v2"'
    assert world.send("--date", "2026-11-29") == 0
    assert world.feeds.hits("/feed/")[-1].headers.get("if-none-match") == '"v2"'


def redate(path: Path, when: str) -> bytes:
    text = path.read_text(encoding="utf-8")
    return re.sub(r"<pubDate>[^<]+</pubDate>", f"<pubDate>{when}</pubDate>", text).encode()


def test_send_signs_every_message_with_dkim_on_the_bytes_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dkim

    from newsletter.mail.dkim import RSA, generate_key

    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    key = generate_key("ree2026", RSA, tmp_path / "keys" / "ree2026.pem")
    swaps = {
        '\nselector = ""': '\nselector = "ree2026"',
        '\nprivate_key = ""': '\nprivate_key = "keys/ree2026.pem"',
    }
    with FeedServer() as feeds, SmtpServer() as smtp:
        feeds.add_file("/feed/", SAMPLE)
        config = make_config(
            tmp_path, [("REE News", feeds.url("/feed/"))], smtp.port, replace=swaps
        )
        world = Deployment.on(config, feeds, smtp)
        store = world.store
        world.add("ann@example.org")
        world.add("bob@example.org")
        assert world.send("--date", ISSUE_DATE) == 0
        store.close()
    published = key.txt_record().encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"ree2026._domainkey.ree-news.example.com."
        return published

    assert len(smtp.messages) == 2
    for received in smtp.messages:
        assert received.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(received.data, dnsfunc=dns)
        tampered = received.data.replace(
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click",
        )
        assert not dkim.verify(tampered, dnsfunc=dns)
