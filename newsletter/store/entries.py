"""Feed entries remembered across runs: the store's side of "each article once, none lost".

A mixin of `store.SqlStore`, like `consent.ConsentMixin`. Three things the feeds cannot tell a
later run, because feeds forget and re-date:
- when an entry was first seen, which is the date of an entry that has none;
- its link, so that a copy of a story under another guid is known once either went out
  (the link is stored as a SHA-256 of the cleaned link: a fixed-size key for the index);
- the article as an issue's selection offered it, so that an article the issue had no room for
  goes into the next issue even after its feed has rotated it out.

Whether an entry went out is never copied here: `issue_articles` says it, joined on the id.
Entries not seen for `RETENTION` are forgotten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.models import Article, Image, IssueStatus
from newsletter.store.engine import dialect_insert
from newsletter.store.issues import ID_CHUNK
from newsletter.store.schema import entries, issue_articles, issues

RETENTION = timedelta(days=90)


def link_key(link: str) -> str:
    return hashlib.sha256(link.encode("utf-8")).hexdigest() if link else ""


class EntriesMixin:
    engine: Engine

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def remember_entries(
        self, newsletter: str, seen: Sequence[tuple[str, str]], now: datetime
    ) -> dict[str, datetime]:
        """Record (entry id, cleaned link) pairs fetched now; return each id's first sighting.

        A known entry keeps its first sighting and gets the link it has now. Entries not seen
        for RETENTION go, in the same transaction.
        """
        links = dict(seen)
        rows = [
            {
                "newsletter": newsletter,
                "entry_id": entry_id,
                "link_key": link_key(link),
                "first_seen": now,
                "last_seen": now,
            }
            for entry_id, link in links.items()
        ]
        with self._write("remember_entries") as conn:
            conn.execute(sa.delete(entries).where(entries.c.last_seen < now - RETENTION))
            if not rows:
                return {}
            insert = _insert(conn)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=("newsletter", "entry_id"),
                    set_={"link_key": insert.excluded.link_key, "last_seen": now},
                ),
                rows,
            )
            return _first_seen(conn, newsletter, links)

    def first_seen(self, newsletter: str, entry_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these entries was first seen, for those seen before (read-only)."""
        with self.engine.connect() as conn:
            return _first_seen(conn, newsletter, entry_ids)

    def sent_links(self, newsletter: str, links: Iterable[str]) -> set[str]:
        """Those of the cleaned `links` that an entry sent in an issue of `newsletter` had."""
        by_key = {link_key(link): link for link in links if link}
        keys = list(by_key)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(keys), ID_CHUNK):
                query = (
                    sa.select(entries.c.link_key)
                    .join(
                        issue_articles,
                        sa.and_(
                            issue_articles.c.newsletter == entries.c.newsletter,
                            issue_articles.c.article_id == entries.c.entry_id,
                        ),
                    )
                    .where(
                        entries.c.newsletter == newsletter,
                        entries.c.link_key.in_(keys[start : start + ID_CHUNK]),
                    )
                )
                found.update(by_key[key] for key in conn.scalars(query))
        return found

    def offer_articles(
        self, newsletter: str, issue_date: date, articles: Sequence[Article], now: datetime
    ) -> None:
        """Keep the articles an issue's selection offered; the first offer's date stays."""
        if not articles:
            return
        rows = [
            {
                "newsletter": newsletter,
                "entry_id": article.id,
                "first_seen": now,
                "last_seen": now,
                "offered_on": issue_date,
                "article": dump_article(article),
            }
            for article in {a.id: a for a in articles}.values()
        ]
        first_offer = sa.func.coalesce(entries.c.offered_on, issue_date)
        with self._write("offer_articles") as conn:
            insert = _insert(conn)
            statement = insert.on_conflict_do_update(
                index_elements=("newsletter", "entry_id"),
                set_={
                    "last_seen": insert.excluded.last_seen,
                    "offered_on": first_offer,
                    "article": insert.excluded.article,
                },
            )
            conn.execute(statement, rows)

    def sent_articles(
        self, newsletter: str, since: datetime, until: datetime
    ) -> list[tuple[date, int, Article]]:
        """(issue date, position, article) of the articles issues of `newsletter` with a cutoff
        in (since, until] sent to someone, oldest issue first: the weekly round-up's material.
        Articles the entries memory does not hold (issues older than it) are left out."""
        reached = (IssueStatus.SENT.value, IssueStatus.CLOSED.value, IssueStatus.SENDING.value)
        query = (
            sa.select(issues.c.issue_date, issue_articles.c.position, entries.c.article)
            .join(issues, issues.c.id == issue_articles.c.issue_id)
            .join(
                entries,
                sa.and_(
                    entries.c.newsletter == issue_articles.c.newsletter,
                    entries.c.entry_id == issue_articles.c.article_id,
                ),
            )
            .where(
                issue_articles.c.newsletter == newsletter,
                issues.c.cutoff > since,
                issues.c.cutoff <= until,
                issues.c.status.in_(reached),
                entries.c.article.is_not(None),
            )
            .order_by(issues.c.issue_date, issue_articles.c.position)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(row.issue_date, row.position, load_article(row.article)) for row in rows]

    def offered_articles(self, newsletter: str, since: date) -> list[tuple[date, Article]]:
        """Articles offered to an issue dated `since` or later that no issue has sent."""
        sent = sa.exists().where(
            issue_articles.c.newsletter == entries.c.newsletter,
            issue_articles.c.article_id == entries.c.entry_id,
        )
        query = (
            sa.select(entries.c.offered_on, entries.c.article)
            .where(
                entries.c.newsletter == newsletter,
                entries.c.offered_on >= since,
                entries.c.article.is_not(None),
                ~sent,
            )
            .order_by(entries.c.offered_on, entries.c.entry_id)
        )
        with self.engine.connect() as conn:
            return [(row.offered_on, load_article(row.article)) for row in conn.execute(query)]


def _first_seen(conn: Connection, newsletter: str, entry_ids: Iterable[str]) -> dict[str, datetime]:
    wanted = list(dict.fromkeys(entry_ids))
    found: dict[str, datetime] = {}
    for start in range(0, len(wanted), ID_CHUNK):
        query = sa.select(entries.c.entry_id, entries.c.first_seen).where(
            entries.c.newsletter == newsletter,
            entries.c.entry_id.in_(wanted[start : start + ID_CHUNK]),
        )
        found.update({row.entry_id: row.first_seen for row in conn.execute(query)})
    return found


def _insert(conn: Connection) -> Any:
    return dialect_insert(conn.dialect.name, entries)


def dump_article(article: Article) -> str:
    """The fields a digest shows, as JSON; the full body is not needed to carry an article."""
    return json.dumps(
        {
            "id": article.id,
            "title": article.title,
            "link": article.link,
            "author": article.author,
            "published": article.published.isoformat(),
            "summary_html": article.summary_html,
            "summary_text": article.summary_text,
            "source": article.source,
            "highlights": list(article.highlights),
            "dated_by_feed": article.dated_by_feed,
            "image": asdict(article.image) if article.image else None,
            "categories": list(article.categories),
            "words": article.words,
        },
        ensure_ascii=False,
    )


def load_article(text: str) -> Article:
    """An offered article; rows written before pictures and categories existed have none."""
    data = json.loads(text)
    image = data.get("image")
    return Article(
        id=data["id"],
        title=data["title"],
        link=data["link"],
        author=data["author"],
        published=datetime.fromisoformat(data["published"]),
        summary_html=data["summary_html"],
        summary_text=data["summary_text"],
        content_html="",
        source=data["source"],
        highlights=tuple(data["highlights"]),
        dated_by_feed=data["dated_by_feed"],
        image=Image(**image) if image else None,
        categories=tuple(data.get("categories", ())),
        words=data.get("words", 0),
    )
