"""Each article once, none lost: issues over several days on a fake clock, real stores.

Every test drives `run_issue` day after day with a feed file rewritten between days, the
store on SQLite and on PostgreSQL, and an outbox transport (the issue is created and marked
sent as in production; nobody is mailed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.mail.outbox import OutboxTransport
from newsletter.models import Digest, RunSummary
from newsletter.pipeline import Run, run_issue
from newsletter.store import SqlStore
from tests.support.clock import FakeClock, at_send_time
from tests.support.config import closed_port, make_config

DAY1 = date(2026, 11, 28)  # London is on UTC in November: the cutoff is 07:00 UTC


@dataclass(frozen=True)
class Item:
    guid: str
    title: str
    at: datetime | None  # None: an undated entry
    link: str = ""

    def xml(self) -> str:
        link = self.link or f"https://ree-news.example.com/{self.guid}/?utm_source=rss"
        when = f"<pubDate>{format_datetime(self.at)}</pubDate>" if self.at else ""
        return (
            f"<item><title>{self.title}</title><link>{link.replace('&', '&amp;')}</link>"
            f'<guid isPermaLink="false">{self.guid}</guid>{when}'
            f"<description>About {self.title}.</description></item>"
        )


class Newsroom:
    """A deployment whose feeds are files this test rewrites between issues."""

    def __init__(
        self, tmp_path: Path, store: SqlStore, feeds: int = 1, max_articles: int = 40
    ) -> None:
        self.paths = [tmp_path / f"feed{n}.xml" for n in range(feeds)]
        for path in self.paths:
            self.publish([], path)
        config = make_config(
            tmp_path,
            [(f"Feed {n}", str(path)) for n, path in enumerate(self.paths)],
            closed_port(),
            replace={"max_articles = 40": f"max_articles = {max_articles}"},
        )
        self.settings: Settings = load_settings(config)
        self.store = store
        self.clock = FakeClock()

    def publish(self, items: Sequence[Item], path: Path | None = None) -> None:
        body = "".join(item.xml() for item in items)
        xml = f'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>{body}'
        xml += "</channel></rss>"
        (path or self.paths[0]).write_text(xml, encoding="utf-8")

    def issue(
        self, day: date, after: timedelta = timedelta(minutes=5)
    ) -> tuple[RunSummary, Digest | None]:
        self.clock.now = at_send_time(self.settings, day, after)()
        run = Run(self.settings, self.store, OutboxTransport(), self.clock)
        return asyncio.run(run_issue(run, day))

    def sent_titles(self, day: date) -> list[str]:
        issue = self.store.get_issue(self.settings.name, day)
        assert issue is not None, f"no issue on {day}"
        return sorted(line for line in issue.digest.text.splitlines() if line.startswith("Story"))


def stories(count: int, first: datetime, prefix: str = "s") -> list[Item]:
    return [
        Item(f"{prefix}-{n:02d}", f"Story {prefix}{n:02d}", first + timedelta(minutes=10 * n))
        for n in range(count)
    ]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_articles_beyond_max_articles_go_into_the_next_issue(
    tmp_path: Path, store: SqlStore
) -> None:
    room = Newsroom(tmp_path, store)
    day1 = stories(46, at(DAY1 - timedelta(days=1), 8))  # all in the first issue's window
    room.publish(day1)
    summary, digest = room.issue(DAY1)
    assert digest is not None and summary.articles == 40
    assert summary.left_out[0] == "6 more carried to the next issue:"
    assert summary.left_out[1] == "  2026-11-27 08:50 UTC  Feed 0: Story s05"
    assert len(summary.left_out) == 7 and summary.left_out[-1].endswith("Story s00")
    assert room.sent_titles(DAY1) == [f"Story s{n:02d}" for n in range(6, 46)]

    # The feed has rotated the six out by the next morning; three new stories arrived.
    day2 = stories(3, at(DAY1, 10), prefix="t")
    room.publish(day2)
    summary, digest = room.issue(DAY1 + timedelta(days=1))
    assert digest is not None and summary.articles == 9 and summary.left_out == ()
    expected = [f"Story s{n:02d}" for n in range(6)] + [f"Story t{n:02d}" for n in range(3)]
    assert room.sent_titles(DAY1 + timedelta(days=1)) == expected
    assert "About Story s00." in digest.text  # carried with its summary

    # Nothing new, nothing carried: an empty day, and nothing sent twice.
    summary, digest = room.issue(DAY1 + timedelta(days=2))
    assert digest is None and summary.articles == 0


def test_an_article_left_out_for_days_is_dropped_with_a_note(
    tmp_path: Path, store: SqlStore
) -> None:
    room = Newsroom(tmp_path, store, max_articles=1)
    old = Item("old", "Story old", at(DAY1, 1))
    notes = []
    for offset in range(5):
        day = DAY1 + timedelta(days=offset)
        fresh = Item(f"new-{offset}", f"Story new {offset}", at(day, 6))
        room.publish([old, fresh])
        summary, _ = room.issue(day)
        assert room.sent_titles(day) == [f"Story new {offset}"]
        notes.append(summary.left_out[:1])
    assert notes == [
        ("1 more carried to the next issue:",),
        ("1 more carried to the next issue:",),
        ("1 more carried to the next issue:",),
        ("1 more dropped, left out of issues for 3 days:",),
        (),  # no longer offered
    ]


def test_articles_the_size_limit_leaves_out_are_carried_too(
    tmp_path: Path, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter import render

    room = Newsroom(tmp_path, store)
    room.publish(stories(12, at(DAY1, 0)))
    monkeypatch.setattr(render, "MAX_HTML_BYTES", 14_000)
    summary, digest = room.issue(DAY1)
    assert digest is not None
    shown = summary.articles
    assert 1 < shown < 12 and summary.left_out[0] == f"{12 - shown} more carried to the next issue:"
    monkeypatch.undo()
    room.publish([])
    summary, _ = room.issue(DAY1 + timedelta(days=1))
    assert summary.articles == 12 - shown


def test_undated_entries_are_dated_by_their_first_sighting(tmp_path: Path, store: SqlStore) -> None:
    room = Newsroom(tmp_path, store)
    undated = Item("undated-1", "Story undated", None)
    room.publish([Item("d-1", "Story dated", at(DAY1, 5)), undated])
    room.issue(DAY1)  # at 07:05, after the cutoff: first seen too late for this issue
    assert room.sent_titles(DAY1) == ["Story dated"]
    room.issue(DAY1 + timedelta(days=1))
    assert room.sent_titles(DAY1 + timedelta(days=1)) == ["Story undated"]
    _, digest = room.issue(DAY1 + timedelta(days=2))
    assert digest is None  # sent once, never again
    # the digest shows no time for it: when we saw it is not when it was published
    issue = store.get_issue(room.settings.name, DAY1 + timedelta(days=1))
    assert issue is not None and "07:05" not in issue.digest.text


def test_an_undated_entry_seen_before_the_send_time_goes_out_that_day(
    tmp_path: Path, store: SqlStore
) -> None:
    room = Newsroom(tmp_path, store)
    room.publish([Item("undated-1", "Story undated", None)])
    _, digest = room.issue(DAY1, after=timedelta(hours=-1))  # built at 06:00
    assert digest is not None and room.sent_titles(DAY1) == ["Story undated"]
    _, digest = room.issue(DAY1 + timedelta(days=1))
    assert digest is None


def test_a_syndicated_copy_is_not_sent_again_the_next_day(tmp_path: Path, store: SqlStore) -> None:
    room = Newsroom(tmp_path, store, feeds=2)
    link = "https://ree-news.example.com/2026/11/27/lynas/"
    story = Item("ree-1", "Story Lynas", at(DAY1, 5), f"{link}?utm_source=rss&utm_medium=rss")
    room.publish([story], room.paths[0])
    room.issue(DAY1)
    assert room.sent_titles(DAY1) == ["Story Lynas"]
    issue = store.get_issue(room.settings.name, DAY1)
    assert issue is not None and f"\n{link}\n" in issue.digest.text  # tracking gone

    # A partner republishes it that evening under its own guid, with its own tracking.
    copy = Item(
        "partner-77",
        "Story Lynas (partner)",
        at(DAY1, 19),
        f"{link}?utm_source=partner&utm_campaign=syndication&fbclid=x#main",
    )
    other = Item("ree-2", "Story other", at(DAY1, 20))
    room.publish([other], room.paths[0])
    room.publish([copy], room.paths[1])
    room.issue(DAY1 + timedelta(days=1))
    assert room.sent_titles(DAY1 + timedelta(days=1)) == ["Story other"]


def test_a_dry_run_stores_nothing_but_shows_what_would_be_carried(
    tmp_path: Path, store: SqlStore
) -> None:
    room = Newsroom(tmp_path, store, max_articles=2)
    room.publish(stories(3, at(DAY1, 1)))
    room.clock.now = at_send_time(room.settings, DAY1)()
    dry = Run(room.settings, store, OutboxTransport(), room.clock, dry_run=True)
    store.read_only = True
    try:
        summary, digest = asyncio.run(run_issue(dry, DAY1))
    finally:
        store.read_only = False
    assert digest is not None and summary.left_out[0] == "1 more carried to the next issue:"
    assert store.first_seen(room.settings.name, ["s-00", "s-01", "s-02"]) == {}
    assert store.offered_articles(room.settings.name, DAY1) == []
