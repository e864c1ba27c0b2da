"""The weekly round-up's articles: the week's top stories from the daily issues that went out.

The round-up is built from what the daily issues actually sent (the articles kept in the
store's entries memory), never from the feeds again: a feed holds only its newest items, and a
story the daily readers got is exactly what the weekly readers should get. The week runs from
the previous round-up's cutoff (or seven days back) to this one's. Top stories: each day's lead
first (newest day first), then the rest newest first, up to `[weekly] max_articles`; a story
in an earlier round-up is not repeated.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from newsletter.config import Settings
from newsletter.ports import Store
from newsletter.selection import Selection
from newsletter.timing import issue_cutoff

WEEK = timedelta(days=7)


def select_week(settings: Settings, store: Store, issue_date: date, now: datetime) -> Selection:
    cutoff = min(issue_cutoff(settings, issue_date), now)
    previous = store.previous_issue(settings.weekly.name, issue_date)
    start = previous.cutoff if previous else issue_cutoff(settings, issue_date) - WEEK
    sent = store.sent_articles(settings.name, start, cutoff)
    leads = [article for _, position, article in sent if position == 0]
    rest = sorted(
        (article for _, position, article in sent if position > 0),
        key=lambda article: article.published,
        reverse=True,
    )
    ranked = list({article.id: article for article in [*reversed(leads), *rest]}.values())
    before = store.sent_article_ids(settings.weekly.name, (article.id for article in ranked))
    fresh = [article for article in ranked if article.id not in before]
    return Selection(articles=tuple(fresh[: settings.weekly.max_articles]), reports=(), states=())
