"""Which issue an article lands in, pinned at the edges: the cutoff instant, the cap, the carry.

Selection is driven directly (`select_articles`) on a JSON Feed file, whose dates keep their
microseconds, and a real store; each issue is then stored as the pipeline stores it (its cutoff,
its articles), so the next window starts where this one ended. Nothing is rendered or mailed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import Settings, load_settings
from newsletter.config.settings import FeedConfig
from newsletter.models import Digest, IssueStatus
from newsletter.selection import CARRY_DAYS, Selection, select_articles
from newsletter.store import SqlStore, open_store
from newsletter.timing import issue_cutoff
from tests.support.config import ROOT
from tests.support.feedserver import FeedServer

DAY = date(2026, 11, 28)  # London on GMT: the cutoff is 07:00 UTC
US = timedelta(microseconds=1)
SHIPPED = load_settings(ROOT / "config.toml", environ={})
_names = itertools.count()


class Desk:
    """One newsletter on one feed file; `issue(day)` selects and stores that day's issue."""

    def __init__(self, folder: Path, store: SqlStore, **changes: object) -> None:
        self.feed = folder / f"feed-{next(_names)}.json"
        self.store = store
        self.settings: Settings = replace(
            SHIPPED,
            name=f"Desk {next(_names)}",
            feeds=(FeedConfig("Feed", str(self.feed)),),
            **changes,  # type: ignore[arg-type]
        )
        self.publish({})

    def publish(self, items: Mapping[str, datetime | None]) -> None:
        """The feed's items by id; None: undated."""
        entries = [
            {
                "id": key,
                "url": f"https://ree-news.example.com/{key}/",
                "title": f"Story {key}",
                "content_html": f"<p>About {key}.</p>",
                **({"date_published": at.isoformat()} if at else {}),
            }
            for key, at in items.items()
        ]
        feed = {"version": "https://jsonfeed.org/version/1.1", "title": "F", "items": entries}
        self.feed.write_text(json.dumps(feed), encoding="utf-8")

    def cutoff(self, day: date) -> datetime:
        return issue_cutoff(self.settings, day)

    def select(self, day: date, now: datetime | None = None) -> Selection:
        now = now or self.cutoff(day) + timedelta(minutes=5)
        return asyncio.run(select_articles(self.settings, self.store, day, now))

    def issue(self, day: date, now: datetime | None = None) -> Selection:
        """Select, then store the issue with the articles it shows, as the pipeline does."""
        now = now or self.cutoff(day) + timedelta(minutes=5)
        chosen = self.select(day, now)
        ids = tuple(a.id for a in chosen.articles)
        digest = Digest(subject="s", preheader="", html="", text="", article_ids=ids)
        cutoff = min(self.cutoff(day), now)
        self.store.create_issue(self.settings.name, day, cutoff, digest, now)
        return chosen


def ids(articles: Sequence[object]) -> list[str]:
    return [a.id for a in articles]  # type: ignore[attr-defined]


# the cutoff instant


def test_an_article_dated_exactly_at_the_cutoff_goes_into_that_days_issue(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({"before": cutoff - US, "at": cutoff, "after": cutoff + US})
    assert ids(desk.issue(DAY).articles) == ["at", "before"]
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == ["after"]
    assert ids(desk.issue(DAY + timedelta(days=2)).articles) == []


def test_the_next_window_opens_just_after_the_previous_cutoff(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store)
    first, second = desk.cutoff(DAY), desk.cutoff(DAY + timedelta(days=1))
    desk.publish({"a": first - timedelta(hours=1)})
    desk.issue(DAY)
    desk.publish({"a": first - timedelta(hours=1), "b": first + US, "c": second, "d": second + US})
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == ["c", "b"]


def test_a_first_issue_looks_back_exactly_24_hours_before_its_cutoff(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    day_ago = cutoff - timedelta(hours=24)
    desk.publish({"old": day_ago, "edge": day_ago + US, "new": cutoff})
    assert ids(desk.issue(DAY).articles) == ["new", "edge"]


def test_an_undated_entry_first_seen_at_the_cutoff_goes_into_that_days_issue(
    tmp_path: Path, store: SqlStore
) -> None:
    """Built early (before the send time), an issue's window ends at the moment it was built."""
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({"seen-at-cutoff": None})
    assert ids(desk.issue(DAY, now=cutoff).articles) == ["seen-at-cutoff"]
    desk.publish({"seen-at-cutoff": None, "seen-after": None})
    assert ids(desk.select(DAY + timedelta(days=1), now=cutoff + US).articles) == ["seen-after"]


def test_a_future_dated_article_waits_for_the_issue_whose_window_holds_it(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store)
    cutoff, next_cutoff = desk.cutoff(DAY), desk.cutoff(DAY + timedelta(days=1))
    desk.publish({"now": cutoff, "tomorrow": next_cutoff, "later": next_cutoff + US})
    assert ids(desk.issue(DAY).articles) == ["now"]
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == ["tomorrow"]
    assert ids(desk.issue(DAY + timedelta(days=2)).articles) == ["later"]


# the cap


def test_over_max_articles_the_newest_go_in_newest_first_and_the_rest_are_carried(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store, max_articles=3)
    cutoff = desk.cutoff(DAY)
    stamps = {f"s{n}": cutoff - timedelta(hours=n) for n in (5, 1, 4, 2, 3)}  # feed order mixed
    desk.publish(stamps)
    chosen = desk.issue(DAY)
    assert ids(chosen.articles) == ["s1", "s2", "s3"]
    assert ids(chosen.left_out) == ["s4", "s5"]
    assert chosen.left_out_report(ids(chosen.articles)) == (
        "2 more carried to the next issue:",
        "  2026-11-28 03:00 UTC  Feed: Story s4",
        "  2026-11-28 02:00 UTC  Feed: Story s5",
    )
    # Carried: offered again the next day (the feed has dropped them), still newest first.
    desk.publish({"t1": cutoff + timedelta(hours=2)})
    chosen = desk.issue(DAY + timedelta(days=1))
    assert ids(chosen.articles) == ["t1", "s4", "s5"] and chosen.left_out == ()


def test_exactly_max_articles_leaves_nothing_out(tmp_path: Path, store: SqlStore) -> None:
    desk = Desk(tmp_path, store, max_articles=2)
    cutoff = desk.cutoff(DAY)
    desk.publish({"a": cutoff, "b": cutoff - US})
    chosen = desk.issue(DAY)
    assert ids(chosen.articles) == ["a", "b"] and chosen.left_out == ()
    assert chosen.left_out_report(["a", "b"]) == ()


def test_a_carried_article_is_offered_for_carry_days_then_dropped_with_a_note(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store, max_articles=1)
    old_at = desk.cutoff(DAY) - timedelta(hours=6)
    reports = []
    for offset in range(CARRY_DAYS + 2):
        day = DAY + timedelta(days=offset)
        desk.publish({"old": old_at, f"new{offset}": desk.cutoff(day) - timedelta(hours=1)})
        chosen = desk.issue(day)
        assert ids(chosen.articles) == [f"new{offset}"]
        reports.append(chosen.left_out_report(ids(chosen.articles))[:1])
        assert ("old" in chosen.last_chance) is (offset == CARRY_DAYS)
    carried = ("1 more carried to the next issue:",)
    dropped = (f"1 more dropped, left out of issues for {CARRY_DAYS} days:",)
    assert reports == [carried] * CARRY_DAYS + [dropped, ()]


def test_the_left_out_report_names_twenty_and_counts_the_rest(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store, max_articles=1)
    cutoff = desk.cutoff(DAY)
    desk.publish({f"s{n:02d}": cutoff - timedelta(minutes=n) for n in range(23)})
    chosen = desk.select(DAY)
    lines = chosen.left_out_report(["s00"])
    assert lines[0] == "22 more carried to the next issue:"
    assert lines[1] == "  2026-11-28 06:59 UTC  Feed: Story s01"
    assert lines[20] == "  2026-11-28 06:40 UTC  Feed: Story s20"
    assert lines[21:] == ("  ... and 2 more",)
    # An article the digest could not fit (size limit) is carried like one over the cap.
    assert chosen.left_out_report([])[0] == "23 more carried to the next issue:"


# every article in exactly one issue, over random zones, send times and dates

ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
ZONES += ["Pacific/Chatham", "America/Sao_Paulo", "Europe/Berlin", "UTC"]
ISSUES = 4


@pytest.fixture(scope="module")
def scratch() -> Iterator[tuple[Path, SqlStore]]:
    """One SQLite store for every example; each example is its own newsletter in it."""
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/windows.db")
        try:
            yield Path(folder), store
        finally:
            store.close()


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(ZONES),
    send=st.builds(time, st.integers(0, 23), st.sampled_from([0, 30, 59])),
    first=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    offsets=st.lists(st.integers(-40 * 3600, ISSUES * 26 * 3600), min_size=1, max_size=12),
    edges=st.lists(st.tuples(st.integers(0, ISSUES - 1), st.sampled_from([-1, 0, 1])), max_size=4),
)
def test_every_article_lands_in_exactly_one_issue_of_a_run_of_days(
    scratch: tuple[Path, SqlStore],
    zone: str,
    send: time,
    first: date,
    offsets: list[int],
    edges: list[tuple[int, int]],
) -> None:
    """Articles anywhere from a day before the first window to past the last cutoff, some a
    microsecond from a cutoff: each one in the window (previous cutoff, cutoff] is in that
    issue and in no other; the first window is the 24 hours before the first cutoff."""
    desk = Desk(*scratch, timezone=ZoneInfo(zone), send_time=send)
    days = [first + timedelta(days=n) for n in range(ISSUES)]
    cutoffs = [desk.cutoff(day) for day in days]
    stamps = [cutoffs[0] + timedelta(seconds=s) for s in offsets]
    stamps += [cutoffs[n] + step * US for n, step in edges]
    desk.publish({f"a{n}": at for n, at in enumerate(stamps)})
    taken: dict[str, list[date]] = {}
    for day in days:
        chosen = desk.issue(day)
        published = [a.published for a in chosen.articles]
        assert published == sorted(published, reverse=True)
        for article in chosen.articles:
            taken.setdefault(article.id, []).append(day)
    starts = [cutoffs[0] - timedelta(hours=24), *cutoffs[:-1]]
    for n, at in enumerate(stamps):
        home = [
            day for day, start, end in zip(days, starts, cutoffs, strict=True) if start < at <= end
        ]
        assert taken.get(f"a{n}", []) == home, (at.astimezone(UTC), cutoffs)


# validators


def _json_feed(items: Mapping[str, datetime]) -> bytes:
    entries = [
        {"id": key, "url": f"https://ree-news.example.com/{key}/", "title": key,
         "content_html": "<p>x</p>", "date_published": at.isoformat()}
        for key, at in items.items()
    ]  # fmt: skip
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "F", "items": entries}
    return json.dumps(feed).encode()


def test_a_feed_with_an_article_past_the_cutoff_keeps_no_validator(
    tmp_path: Path, store: SqlStore
) -> None:
    """After a stored ETag the next fetch may answer 304, and the waiting article be lost; an
    article at the cutoff instant is taken, so its feed's validator is safe to keep."""
    cutoff = issue_cutoff(SHIPPED, DAY)
    with FeedServer() as server:
        json_type = "application/feed+json"
        at_cutoff = server.add(
            "/at.json", _json_feed({"at": cutoff}), content_type=json_type, etag='"v1"'
        )
        waiting = server.add(
            "/after.json", _json_feed({"after": cutoff + US}), content_type=json_type, etag='"v2"'
        )
        desk = Desk(tmp_path, store)
        desk.settings = replace(
            desk.settings, feeds=(FeedConfig("At", at_cutoff), FeedConfig("After", waiting))
        )
        chosen = desk.select(DAY)
    assert ids(chosen.articles) == ["at"]
    assert [(s.url, s.etag) for s in chosen.states] == [(at_cutoff, '"v1"')]


# what is carried, and from where


def test_a_rerun_of_the_same_date_still_offers_what_its_first_run_offered(
    tmp_path: Path, store: SqlStore
) -> None:
    """A run that offered articles but stopped before the issue existed left them in the store;
    the next run of that date offers them again even if the feed has rotated them out."""
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({"a": cutoff - timedelta(hours=2), "b": cutoff - timedelta(hours=3)})
    assert ids(desk.select(DAY).articles) == ["a", "b"]  # no issue stored
    desk.publish({"c": cutoff - timedelta(hours=1)})
    assert ids(desk.issue(DAY).articles) == ["c", "a", "b"]


def test_a_rerun_still_offers_an_article_dated_exactly_at_the_cutoff_the_feed_dropped(
    tmp_path: Path, store: SqlStore
) -> None:
    """The cutoff belongs to its own issue also for what a first run offered: an article dated
    at the cutoff instant, rotated out of the feed before the rerun, is still offered."""
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({"edge": cutoff, "b": cutoff - timedelta(hours=3)})
    assert ids(desk.select(DAY).articles) == ["edge", "b"]  # no issue stored
    desk.publish({"c": cutoff - timedelta(hours=1)})
    assert ids(desk.issue(DAY).articles) == ["edge", "c", "b"]


def test_a_carried_article_goes_out_as_the_feed_now_has_it(tmp_path: Path, store: SqlStore) -> None:
    desk = Desk(tmp_path, store, max_articles=1)
    cutoff = desk.cutoff(DAY)
    desk.publish({"new": cutoff - timedelta(hours=1), "old": cutoff - timedelta(hours=2)})
    assert ids(desk.issue(DAY).left_out) == ["old"]
    desk.feed.write_text(
        desk.feed.read_text(encoding="utf-8").replace("Story old", "Story old, corrected"),
        encoding="utf-8",
    )
    chosen = desk.issue(DAY + timedelta(days=1))
    assert [a.title for a in chosen.articles] == ["Story old, corrected"]


def test_an_article_that_appears_after_its_window_closed_is_not_sent_later(
    tmp_path: Path, store: SqlStore
) -> None:
    """Backdated into a window that has gone out, even to its last instant, it stays out."""
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({"a": cutoff - timedelta(hours=1)})
    desk.issue(DAY)
    desk.publish({"a": cutoff - timedelta(hours=1), "late": cutoff, "next": cutoff + US})
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == ["next"]


def test_a_dry_run_dates_an_undated_entry_by_when_a_real_run_first_saw_it(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store)
    seen = desk.cutoff(DAY) + timedelta(minutes=5)
    desk.publish({"undated": None})
    assert ids(desk.issue(DAY, now=seen).articles) == []  # seen after the cutoff
    store.read_only = True
    try:
        chosen = desk.select(DAY + timedelta(days=1))
    finally:
        store.read_only = False
    assert [(a.id, a.published) for a in chosen.articles] == [("undated", seen)]


def test_exactly_twenty_left_out_are_all_named(tmp_path: Path, store: SqlStore) -> None:
    desk = Desk(tmp_path, store, max_articles=1)
    cutoff = desk.cutoff(DAY)
    desk.publish({f"s{n:02d}": cutoff - timedelta(minutes=n) for n in range(21)})
    lines = desk.select(DAY).left_out_report(["s00"])
    assert lines[0] == "20 more carried to the next issue:" and len(lines) == 21
    assert lines[-1] == "  2026-11-28 06:40 UTC  Feed: Story s20"


def _abandoned(desk: Desk, day: date, cutoff: datetime) -> None:
    digest = Digest(subject="s", preheader="", html="", text="", article_ids=())
    issue = desk.store.create_issue(desk.settings.name, day, cutoff, digest, cutoff)
    desk.store.set_issue_status(issue.id, IssueStatus.ABANDONED, cutoff)


def test_after_abandoned_issues_the_window_reaches_back_over_the_last_30(
    tmp_path: Path, store: SqlStore
) -> None:
    """Issues that reached nobody are carried by the next one: its window starts 24 hours
    before the earliest of them, looking at most 30 issues back."""
    desk = Desk(tmp_path, store)
    for back in range(31, 0, -1):
        day = DAY - timedelta(days=back)
        _abandoned(desk, day, desk.cutoff(day))
    start = desk.cutoff(DAY - timedelta(days=30)) - timedelta(hours=24)
    desk.publish({"first": start + US, "before": start, "older": start - timedelta(hours=1)})
    assert ids(desk.select(DAY).articles) == ["first"]


def test_a_dates_own_abandoned_issue_does_not_widen_its_window(
    tmp_path: Path, store: SqlStore
) -> None:
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    _abandoned(desk, DAY, cutoff - timedelta(hours=12))  # built early, then closed
    desk.publish({"in": cutoff - timedelta(hours=23), "out": cutoff - timedelta(hours=30)})
    assert ids(desk.select(DAY).articles) == ["in"]


def test_a_carried_article_and_a_new_copy_of_it_make_one_offer(
    tmp_path: Path, store: SqlStore
) -> None:
    """A left-out story republished under a new id with the same link is offered once: the
    copy the feed has now, and the carried original not beside it."""
    desk = Desk(tmp_path, store, max_articles=1)
    cutoff = desk.cutoff(DAY)
    desk.publish({"lead": cutoff - timedelta(hours=1), "story": cutoff - timedelta(hours=2)})
    assert ids(desk.issue(DAY).left_out) == ["story"]
    later = desk.cutoff(DAY + timedelta(days=1))
    desk.publish({"copy": later - timedelta(hours=1), "other": later - timedelta(hours=2)})
    desk.feed.write_text(
        desk.feed.read_text(encoding="utf-8").replace("/copy/", "/story/?utm_source=rss"),
        encoding="utf-8",
    )
    desk.settings = replace(desk.settings, max_articles=10)
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == ["copy", "other"]


def test_an_article_sent_once_never_comes_back_under_its_id(
    tmp_path: Path, store: SqlStore
) -> None:
    """Re-dated into a later window and without a link to recognise it by, the id suffices."""
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({"a": cutoff - timedelta(hours=1)})
    assert ids(desk.issue(DAY).articles) == ["a"]
    later = desk.cutoff(DAY + timedelta(days=1))
    desk.publish({"a": later - timedelta(hours=1), "b": later - timedelta(hours=2)})
    feed = json.loads(desk.feed.read_text(encoding="utf-8"))
    for item in feed["items"]:
        del item["url"]
    desk.feed.write_text(json.dumps(feed), encoding="utf-8")
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == ["b"]


@pytest.mark.parametrize("odd", ["\x00", "\udcff", "a\x00\ud800b"])
def test_an_item_spelling_a_nul_or_a_lone_surrogate_is_selected_once_beside_the_rest(
    tmp_path: Path, store: SqlStore, odd: str
) -> None:
    """A JSON Feed may spell "\\u0000" and "\\udcff" in any string. A lone surrogate failed the
    whole feed (the sanitizer and the link cleaner encode to UTF-8), and a NUL in an id failed
    the run on PostgreSQL (entries are keyed by it), a traceback to the operator."""
    desk = Desk(tmp_path, store)
    cutoff = desk.cutoff(DAY)
    desk.publish({f"x{odd}y": cutoff - timedelta(hours=2), "good": cutoff - timedelta(hours=1)})
    chosen = desk.issue(DAY).articles
    kept = "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in odd)
    assert ids(chosen) == ["good", f"x{kept}y"]
    hostile = chosen[1]
    shown = hostile.title + hostile.content_html + hostile.link + hostile.summary_text
    assert "\x00" not in shown and not any("\ud800" <= c <= "\udfff" for c in shown)
    assert hostile.link.startswith("https://ree-news.example.com/x")
    assert ids(desk.issue(DAY + timedelta(days=1)).articles) == []  # the same id both runs
