"""Which articles belong to the issue of a date, and which feed validators are safe to keep.

Rules (also in the README, "Which articles go into an issue"):
- The issue of date D offers the articles dated after the previous issue's cutoff (abandoned
  issues aside; on a first run: the 24 hours before D's cutoff, or before the earliest
  abandoned issue's) up to D's cutoff (D at `send_time`, local time), and
  every article an earlier issue offered but did not send (it had no room), for CARRY_DAYS
  after its first offer. Left out longer than that, an article is dropped, and the run says so.
- An article some issue sent never appears again: not under its id, and not under another id
  with the same link (a syndicated copy; links compared without tracking parameters).
- A future-dated article (after the cutoff) waits for the issue whose window holds its date.
- An undated article is dated by when a run first saw it (remembered in the store), so it goes
  into the first issue whose cutoff follows that moment, and no other.
- The newest `max_articles` of the offered articles go in; the rest are carried.

A dry run reads the store but writes nothing: what it shows is what a real run would send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from newsletter import feeds
from newsletter.clean import link_identity
from newsletter.config.settings import Settings
from newsletter.errors import ReadOnlyStoreError
from newsletter.models import Article, FeedReport, FeedState
from newsletter.ports import Store
from newsletter.timing import issue_cutoff

FIRST_RUN_LOOKBACK = timedelta(hours=24)
CARRY_DAYS = 3  # a left-out article is offered to issues dated up to this many days later
CARRY = timedelta(days=CARRY_DAYS)
LISTED = 20  # left-out articles named one by one in the run summary


@dataclass(frozen=True)
class Selection:
    articles: tuple[Article, ...]  # the newest `max_articles` offered, newest first
    reports: tuple[FeedReport, ...]
    states: tuple[FeedState, ...]  # validators to store once the issue exists
    left_out: tuple[Article, ...] = ()  # offered beyond `max_articles`, newest first
    last_chance: frozenset[str] = field(default_factory=frozenset)  # ids dropped if left out

    def left_out_report(self, shown_ids: Iterable[str]) -> tuple[str, ...]:
        """What happened to each offered article the digest does not show, for the summary.

        `shown_ids` are the digest's: render may leave out more from the tail (size limit).
        """
        shown = set(shown_ids)
        missed = [a for a in self.articles if a.id not in shown] + list(self.left_out)
        carried = [a for a in missed if a.id not in self.last_chance]
        dropped = [a for a in missed if a.id in self.last_chance]
        lines: list[str] = []
        if carried:
            lines.append(f"{len(carried)} more carried to the next issue:")
            lines.extend(_listed(carried))
        if dropped:
            lines.append(f"{len(dropped)} more dropped, left out of issues for {CARRY_DAYS} days:")
            lines.extend(_listed(dropped))
        return tuple(lines)


async def select_articles(
    settings: Settings, store: Store, issue_date: date, now: datetime
) -> Selection:
    """Fetch every feed and pick the articles this date's issue offers, newest first."""
    name = settings.name
    known = {f.url: s for f in settings.feeds if (s := store.get_feed_state(f.url))}
    batch = await feeds.collect(settings.feeds, settings.fetch, known, now)
    fetched, writable = _dated(store, name, batch.articles, now)
    cutoff = issue_cutoff(settings, issue_date)
    previous = store.previous_issue(name, issue_date)
    start = previous.cutoff if previous else _first_start(settings, store, issue_date, cutoff)
    since = issue_date - CARRY
    earlier = [(day, a) for day, a in store.offered_articles(name, since) if day <= issue_date]
    first_offer = {article.id: day for day, article in earlier}
    latest = {article.id: article for article in fetched}  # the feed's version, if it has one
    carried = [latest.get(article.id, article) for _, article in earlier]
    offered = [a for a in fetched if start < a.published <= cutoff]
    offered = _unsent(store, name, _unique(offered + [a for a in carried if a.published <= cutoff]))
    offered.sort(key=lambda article: article.published, reverse=True)
    if writable:
        store.offer_articles(name, issue_date, offered, now)
    ends = {a.id for a in offered if first_offer.get(a.id, issue_date) + CARRY <= issue_date}
    limit = settings.max_articles
    return Selection(
        articles=tuple(offered[:limit]),
        reports=batch.reports,
        states=_safe_states(settings, batch.states, fetched, cutoff),
        left_out=tuple(offered[limit:]),
        last_chance=frozenset(ends),
    )


def _dated(
    store: Store, name: str, articles: Sequence[Article], now: datetime
) -> tuple[list[Article], bool]:
    """Remember what was fetched; date undated articles by their first sighting.

    Returns the articles and whether the store took the writes (a dry run's does not).
    """
    seen = [(a.id, link_identity(a.link)) for a in articles]
    try:
        first = store.remember_entries(name, seen, now)
        writable = True
    except ReadOnlyStoreError:
        first = store.first_seen(name, (a.id for a in articles))
        writable = False
    dated = [a if a.dated_by_feed else replace(a, published=first.get(a.id, now)) for a in articles]
    return dated, writable


def _unique(articles: Iterable[Article]) -> list[Article]:
    """The first of articles sharing an id or a link (without tracking or fragment)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for article in articles:
        keys = {("id", article.id)}
        if article.link:
            keys.add(("link", link_identity(article.link)))
        if not keys & seen:
            kept.append(article)
        seen |= keys
    return kept


def _unsent(store: Store, name: str, articles: list[Article]) -> list[Article]:
    """Articles no issue has sent, by id or by link."""
    sent_ids = store.sent_article_ids(name, (a.id for a in articles))
    sent_links = store.sent_links(name, (link_identity(a.link) for a in articles if a.link))
    return [
        a
        for a in articles
        if a.id not in sent_ids and not (a.link and link_identity(a.link) in sent_links)
    ]


def _listed(articles: Sequence[Article]) -> list[str]:
    lines = [f"  {a.published:%Y-%m-%d %H:%M} UTC  {a.source}: {a.title}" for a in articles]
    if len(lines) > LISTED:
        lines[LISTED:] = [f"  ... and {len(lines) - LISTED} more"]
    return lines


def _first_start(settings: Settings, store: Store, issue_date: date, cutoff: datetime) -> datetime:
    """Where the window starts when no earlier issue went out: the lookback before this
    cutoff, or before the earliest abandoned issue's, so that issue's articles are carried."""
    earlier = [
        i.cutoff for i in store.recent_issues(settings.name, 30) if i.issue_date < issue_date
    ]
    return min([cutoff, *earlier]) - FIRST_RUN_LOOKBACK


def _safe_states(
    settings: Settings,
    states: tuple[FeedState, ...],
    articles: Sequence[Article],
    cutoff: datetime,
) -> tuple[FeedState, ...]:
    """Keep validators only for feeds with nothing waiting past the cutoff.

    After a stored ETag the next fetch may answer 304 with no body, so any article this issue
    did not take (dated after the cutoff) would never be seen again.
    """
    waiting = {a.source for a in articles if a.published > cutoff}
    held_back = {f.url for f in settings.feeds if f.name in waiting}
    return tuple(s for s in states if s.url not in held_back)
