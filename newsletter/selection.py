"""Which articles belong to the issue of a date, and which feed validators are safe to keep.

Rules (also in the README):
- The issue of date D covers articles published after the previous issue's cutoff (or in the
  24 hours before D's cutoff on a first run) and up to D's cutoff: D at `send_time`, local time.
- An article that was in any earlier issue never appears again, whatever its new date.
- A future-dated article (after the cutoff) waits for the issue whose window holds its date.
- An undated article is dated when first fetched (`dated_by_feed=False`), so it goes into the
  next issue whose cutoff follows that fetch, and is not repeated afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from . import feeds
from .config import Settings
from .models import Article, FeedReport, FeedState
from .ports import Store

FIRST_RUN_LOOKBACK = timedelta(hours=24)


def issue_cutoff(settings: Settings, issue_date: date) -> datetime:
    """The issue of a date covers what was published up to its local send time."""
    local = datetime.combine(issue_date, settings.send_time, tzinfo=settings.timezone)
    return local.astimezone(UTC)


@dataclass(frozen=True)
class Selection:
    articles: tuple[Article, ...]
    reports: tuple[FeedReport, ...]
    states: tuple[FeedState, ...]  # validators to store once the issue exists


async def select_articles(
    settings: Settings, store: Store, issue_date: date, now: datetime
) -> Selection:
    """Fetch every feed and keep the new articles of this date's window, newest first."""
    known = {f.url: s for f in settings.feeds if (s := store.get_feed_state(f.url))}
    batch = await feeds.collect(settings.feeds, settings.fetch, known, now)
    cutoff = issue_cutoff(settings, issue_date)
    previous = store.previous_issue(settings.name, issue_date)
    start = previous.cutoff if previous else cutoff - FIRST_RUN_LOOKBACK
    window = [a for a in batch.articles if start < a.published <= cutoff]
    seen = store.sent_article_ids(settings.name, (a.id for a in window))
    fresh = sorted((a for a in window if a.id not in seen), key=lambda a: a.published, reverse=True)
    return Selection(
        articles=tuple(fresh[: settings.max_articles]),
        reports=batch.reports,
        states=_safe_states(settings, batch.states, batch.articles, cutoff),
    )


def _safe_states(
    settings: Settings,
    states: tuple[FeedState, ...],
    articles: tuple[Article, ...],
    cutoff: datetime,
) -> tuple[FeedState, ...]:
    """Keep validators only for feeds with nothing waiting past the cutoff.

    After a stored ETag the next fetch may answer 304 with no body, so any article this issue
    did not take (dated after the cutoff) would never be seen again.
    """
    waiting = {a.source for a in articles if a.published > cutoff}
    held_back = {f.url for f in settings.feeds if f.name in waiting}
    return tuple(s for s in states if s.url not in held_back)
