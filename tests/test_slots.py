"""Feed text is data, never a template: only the slots our templates own get a reader's values.

A feed that puts `__READER_EMAIL__` or `__UNSUBSCRIBE_URL__` into a title, link or summary
(plain, split, percent-encoded, entity-encoded, or with a guessed key) must reach every reader
as written; the reader's address and unsubscribe link appear only in the footer and headers.
"""

from __future__ import annotations

import asyncio
import email
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter import slots
from newsletter.compose import MessageTemplate
from newsletter.config import FeedConfig, FetchConfig, Settings, load_settings
from newsletter.feeds import collect
from newsletter.models import (
    EMAIL_PLACEHOLDER,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Recipient,
)
from newsletter.render import DigestRenderer
from tests.render.test_render import broken_copy

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
ISSUE = date(2026, 11, 28)
READER = Recipient(
    subscriber_id=7,
    email="reader@example.org",
    unsubscribe_url="https://ree-news.example.com/newsletter/u/SECRET-TOKEN.sig",
    preferences_url="https://ree-news.example.com/newsletter/preferences/SECRET-TOKEN.sig",
)
E, U, P = "__READER_EMAIL__", "__UNSUBSCRIBE_URL__", "__PREFERENCES_URL__"
HOSTILE_ITEMS = [
    # (title, link, description) as they stand in the XML
    (
        f"Claim your prize, {E}",
        f"https://evil.example/t?e={E}&amp;u={U}",
        f"<p>Hi {E}, see {U} or {P}</p>",
    ),
    ("Split __READER_\nEMAIL__ title", "https://evil.example/split", "__UNSUBSCRIBE_\nURL__ end"),
    (
        "Percent %5F%5FREADER_EMAIL%5F%5F",
        "https://evil.example/p?e=%5F%5FREADER_EMAIL%5F%5F&amp;u=%5f%5fUNSUBSCRIBE_URL%5f%5f",
        "&lt;a href=&quot;https://evil.example/?u=%5F%5FUNSUBSCRIBE_URL%5F%5F&quot;&gt;x&lt;/a&gt;",
    ),
    (
        "Entity &amp;#95;&amp;#95;READER_EMAIL&amp;#95;&amp;#95; and "
        "&#95;&#95;UNSUBSCRIBE_URL&#95;&#95;",
        "https://evil.example/entity?e=&#95;&#95;READER_EMAIL&#95;&#95;",
        "&lt;p&gt;&amp;#95;&amp;#95;READER_EMAIL&amp;#95;&amp;#95;&lt;/p&gt;",
    ),
    (
        "Guessed __READER_EMAIL_0123456789abcdef__ key",
        "https://evil.example/g?e=__UNSUBSCRIBE_URL_0123456789abcdef__&amp;p=__PREFERENCES_URL__",
        "&lt;ul&gt;&lt;li&gt;__READER_EMAIL__ one&lt;/li&gt;&lt;li&gt;two&lt;/li&gt;&lt;/ul&gt;",
    ),
]


def hostile_feed(tmp_path: Path) -> Path:
    items = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>h-{n}</guid>"
        f"<pubDate>Fri, 27 Nov 2026 1{n}:00:00 +0000</pubDate>"
        f"<description>{body}</description></item>"
        for n, (title, link, body) in enumerate(HOSTILE_ITEMS)
    )
    xml = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>H</title>{items}</channel></rss>'
    )
    path = tmp_path / "hostile.xml"
    path.write_text(xml, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The shipped config with [weekly] on, so that the digest has all three reader slots."""
    shipped = load_settings(ROOT / "config.toml", environ={})
    return replace(shipped, weekly=replace(shipped.weekly, enabled=True))


def sent_message(settings: Settings, tmp_path: Path) -> EmailMessage:
    fetch = FetchConfig(timeout=5, max_bytes=1_000_000, user_agent="t")
    source = f"Feed {E}"  # even a feed's configured name is data
    feed = FeedConfig(source, str(hostile_feed(tmp_path)))
    batch = asyncio.run(collect([feed], fetch, {}, NOW))
    assert len(batch.articles) == len(HOSTILE_ITEMS)
    digest = DigestRenderer(settings).render(batch.articles, ISSUE)
    raw = MessageTemplate.build(digest, settings, ISSUE, NOW).render(READER).data
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain, html = (part.get_content() for part in message.iter_parts())
    assert isinstance(plain, str) and isinstance(html, str)
    return plain, html


def test_only_template_slots_are_filled(settings: Settings, tmp_path: Path) -> None:
    message = sent_message(settings, tmp_path)
    plain, html = bodies(message)
    # the footer's "with reader@example.org" and the unsubscribe link, once per part
    assert plain.count(READER.email) == 1
    assert html.count(READER.email) == 1
    for part in (plain, html):
        assert part.count(READER.unsubscribe_url) == 1
        assert part.count(READER.preferences_url) == 1
        rest = part.replace(READER.unsubscribe_url, "").replace(READER.preferences_url, "")
        assert "SECRET-TOKEN" not in rest
    # no evil link carries the reader's values, in any part
    for part in (plain, html):
        for link in re.findall(r"https://evil\.example[^\s\"<>]*", part):
            assert "reader" not in link and "SECRET" not in link, link
    # the feed's words reach the reader as written (the joiner is invisible)
    shown = plain.replace(slots.WORD_JOINER, "")
    assert f"Claim your prize, {E}" in shown
    assert "Guessed __READER_EMAIL_0123456789abcdef__ key" in shown
    assert "Entity __READER_EMAIL__ and __UNSUBSCRIBE_URL__" in shown  # HTML title, decoded once
    assert "Percent %5F%5FREADER_EMAIL%5F%5F" in shown
    # nothing slot-like is left for a later step either
    for part in (plain, html):
        assert E not in part and U not in part and P not in part


def test_digest_holds_exactly_the_template_slots(settings: Settings, tmp_path: Path) -> None:
    fetch = FetchConfig(timeout=5, max_bytes=1_000_000, user_agent="t")
    batch = asyncio.run(collect([FeedConfig("H", str(hostile_feed(tmp_path)))], fetch, {}, NOW))
    digest = DigestRenderer(settings).render(batch.articles, ISSUE)
    for part in (digest.html, digest.text):
        assert part.count(EMAIL_PLACEHOLDER) == 1
        assert part.count(UNSUBSCRIBE_URL_PLACEHOLDER) == 1
        assert part.count(PREFERENCES_URL_PLACEHOLDER) == 1
    assert EMAIL_PLACEHOLDER not in digest.preheader


def test_a_literal_slot_in_a_template_is_not_filled_either(
    settings: Settings, tmp_path: Path
) -> None:
    """Only `{{ email }}` makes a slot; the same characters typed into a template do not."""
    copy = broken_copy(
        settings, tmp_path, "digest.txt", "{{ long_date }}", f"{{{{ long_date }}}} {E}"
    )
    articles = asyncio.run(
        collect([FeedConfig("H", str(hostile_feed(tmp_path)))],
                FetchConfig(timeout=5, max_bytes=1_000_000, user_agent="t"), {}, NOW)
    ).articles  # fmt: skip
    digest = DigestRenderer(copy).render(articles, ISSUE)
    assert digest.text.count(EMAIL_PLACEHOLDER) == 1  # the footer's
    assert f"_{slots.WORD_JOINER}_READER_EMAIL__" in digest.text.splitlines()[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (E, f"_{slots.WORD_JOINER}_READER_EMAIL__"),
        (f"a{U}b", f"a_{slots.WORD_JOINER}_UNSUBSCRIBE_URL__b"),
        (f"{P}!", f"_{slots.WORD_JOINER}_PREFERENCES_URL__!"),
        (
            "__READER_EMAIL_deadbeefdeadbeef__",
            f"_{slots.WORD_JOINER}_READER_EMAIL_deadbeefdeadbeef__",
        ),
        ("__reader_email__ and _READER_EMAIL_", "__reader_email__ and _READER_EMAIL_"),
    ],
)
def test_inert(value: str, expected: str) -> None:
    assert slots.inert(value) == expected
    assert slots.inert(slots.inert(value)) == expected


def test_inert_url_is_the_same_url() -> None:
    url = f"https://evil.example/t?e={E}"
    assert slots.inert_url(url) == "https://evil.example/t?e=_%5FREADER_EMAIL__"
