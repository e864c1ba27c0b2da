"""Issue queries for `store.SqlStore`, as functions of an open connection.

Split out of `store` to keep modules short; the store owns the transactions, these only run
statements inside them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from newsletter.errors import StoreError
from newsletter.models import Digest, Frequency, Issue, IssueStatus
from newsletter.store.schema import issue_articles, issues

# Stays well under SQLite's bound-parameter limit (999 on old builds) and keeps IN lists sane.
ID_CHUNK = 500


def insert_issue(
    conn: Connection,
    newsletter: str,
    issue_date: date,
    cutoff: datetime,
    digest: Digest,
    now: datetime,
    kind: Frequency = Frequency.DAILY,
) -> int:
    """Insert the issue and its article rows; return the new id.

    The two inserts fail for different reasons, so each IntegrityError gets its own message:
    the first means another run already made today's issue, the second that an article was
    already sent in an earlier one.
    """
    values = {
        "newsletter": newsletter,
        "issue_date": issue_date,
        "status": IssueStatus.SENDING.value,
        "cutoff": cutoff,
        "subject": digest.subject,
        "preheader": digest.preheader,
        "html": digest.html,
        "text": digest.text,
        "created_at": now,
        "kind": kind.value,
    }
    try:
        key = conn.execute(sa.insert(issues).values(values)).inserted_primary_key
    except sa.exc.IntegrityError as exc:
        raise StoreError(f"{newsletter}: an issue for {issue_date} already exists") from exc
    assert key is not None  # a single-row insert always reports its key
    issue_id = int(key[0])
    article_ids = list(dict.fromkeys(digest.article_ids))  # drop repeats, keep digest order
    if not article_ids:
        return issue_id
    rows = [
        {"newsletter": newsletter, "article_id": article_id, "issue_id": issue_id, "position": n}
        for n, article_id in enumerate(article_ids)
    ]
    try:
        conn.execute(sa.insert(issue_articles), rows)
    except sa.exc.IntegrityError as exc:
        raise StoreError(f"{newsletter}: the digest repeats articles of an earlier issue") from exc
    return issue_id


def load_issue(conn: Connection, where: sa.ColumnElement[bool]) -> Issue | None:
    """The latest issue matching `where`, its digest rebuilt with article ids in digest order."""
    found = load_issues(conn, where, 1)
    return found[0] if found else None


def load_issues(conn: Connection, where: sa.ColumnElement[bool], limit: int) -> list[Issue]:
    """Up to `limit` issues matching `where`, newest date first."""
    query = sa.select(issues).where(where).order_by(issues.c.issue_date.desc()).limit(limit)
    found = []
    for row in conn.execute(query).all():
        ids_query = (
            sa.select(issue_articles.c.article_id)
            .where(issue_articles.c.issue_id == row.id)
            .order_by(issue_articles.c.position)
        )
        found.append(_issue(row, tuple(conn.scalars(ids_query))))
    return found


def _issue(row: sa.Row[Any], article_ids: tuple[str, ...]) -> Issue:
    digest = Digest(
        subject=row.subject,
        preheader=row.preheader,
        html=row.html,
        text=row.text,
        article_ids=article_ids,
    )
    return Issue(
        id=row.id,
        newsletter=row.newsletter,
        issue_date=row.issue_date,
        status=IssueStatus(row.status),
        cutoff=row.cutoff,
        digest=digest,
        created_at=row.created_at,
        sent_at=row.sent_at,
        kind=Frequency(row.kind),
    )


def update_issue_status(
    conn: Connection, issue_id: int, status: IssueStatus, now: datetime
) -> None:
    """A finished status stamps sent_at (when it ended); back to SENDING clears it.

    ABANDONED also releases the issue's articles: they count as not sent, so the next issue
    carries them.
    """
    sent_at = now if status.finished else None
    values = {"status": status.value, "sent_at": sent_at}
    result = conn.execute(sa.update(issues).where(issues.c.id == issue_id).values(values))
    if result.rowcount == 0:
        raise StoreError(f"no issue with id {issue_id}")
    if status is IssueStatus.ABANDONED:
        conn.execute(sa.delete(issue_articles).where(issue_articles.c.issue_id == issue_id))


def select_sent_article_ids(
    conn: Connection, newsletter: str, article_ids: Iterable[str]
) -> set[str]:
    """Those of `article_ids` that went out in an issue of `newsletter`, queried in chunks."""
    wanted = list(dict.fromkeys(article_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), ID_CHUNK):
        query = sa.select(issue_articles.c.article_id).where(
            issue_articles.c.newsletter == newsletter,
            issue_articles.c.article_id.in_(wanted[start : start + ID_CHUNK]),
        )
        found.update(conn.scalars(query))
    return found


def count_issues_before(conn: Connection, newsletter: str, issue_date: date) -> int:
    """Issues of `newsletter` dated before `issue_date` that went out, in whole or in part.

    An abandoned issue reached nobody, so it has no number; the next issue's number is this
    count plus one, the same however often that issue is rendered (dry runs, a re-run).
    """
    query = sa.select(sa.func.count()).where(
        issues.c.newsletter == newsletter,
        issues.c.issue_date < issue_date,
        issues.c.status != IssueStatus.ABANDONED.value,
    )
    return int(conn.scalar(query) or 0)
