"""Bounces and complaints reported after the send, webhook keys, feed fetches, dashboard counts.

A mixin of `store.SqlStore`. `record_signals` is the one write of the signal desk
(`newsletter.signals.desk`): the request's idempotency key, each report's row and the change
it makes to its reader happen in one transaction, so a retried or replayed request, or a
mailbox read twice, changes nothing the second time, and a crash in between loses nothing.
Arguments are read through small protocols, so the store never imports the desk above it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.models import DeliveryStatus, FeedReport, SubscriberStatus, storable
from newsletter.store.engine import dialect_insert
from newsletter.store.ledger import count_hard_bounce
from newsletter.store.schema import (
    deliveries,
    feed_fetches,
    issues,
    signal_events,
    subscribers,
    webhook_keys,
)
from newsletter.store.subscribers import change_status

KEEP_KEYS = timedelta(days=7)  # longer than any provider's retry or freshness window
KEEP_FETCHES = timedelta(days=90)
# The outcome of a report of a kind its reader already has for that issue: recorded, not applied.
REPEAT = "repeat"


class SignalRow(Protocol):
    @property
    def event_key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def occurred_at(self) -> datetime | None: ...


class MatchRow(Protocol):
    @property
    def subscriber_id(self) -> int: ...
    @property
    def issue_id(self) -> int | None: ...
    @property
    def by(self) -> str: ...


class SignalsMixin:
    engine: Engine

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    # finding the reader

    def delivery_by_message_id(self, message_id: str) -> tuple[int, int] | None:
        """(issue id, subscriber id) of the ledger row that sent this Message-ID."""
        query = sa.select(deliveries.c.issue_id, deliveries.c.subscriber_id).where(
            deliveries.c.message_id == message_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else (int(row.issue_id), int(row.subscriber_id))

    def last_issue_sent_to(self, subscriber_id: int, before: datetime) -> int | None:
        query = (
            sa.select(issues.c.id)
            .join(deliveries, deliveries.c.issue_id == issues.c.id)
            .where(
                deliveries.c.subscriber_id == subscriber_id,
                deliveries.c.status == DeliveryStatus.SENT.value,
                issues.c.created_at <= before,
            )
            .order_by(issues.c.issue_date.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.scalar(query)
        return None if found is None else int(found)

    def subscriber_exists(self, subscriber_id: int) -> bool:
        query = sa.select(subscribers.c.id).where(subscribers.c.id == subscriber_id)
        with self.engine.connect() as conn:
            return conn.scalar(query) is not None

    # the one write

    def record_signals(
        self,
        provider: str,
        request_key: str | None,
        items: Sequence[tuple[SignalRow, MatchRow | None]],
        bounce_threshold: int,
        now: datetime,
    ) -> list[str] | None:
        """Record each report and apply it to its reader; None if the request was seen before.

        Outcomes: unsubscribed (a complaint), complaint (its reader had already left),
        bounced / counted (a hard bounce at / below the threshold), soft, unmatched, duplicate
        (this event was recorded before), repeat (its reader already has a report of this kind
        about this issue: see `_reported_before`).
        """
        with self._write("record_signals") as conn:
            if request_key is not None:
                old_keys = webhook_keys.c.seen_at < now - KEEP_KEYS  # indexed: a cheap delete
                conn.execute(sa.delete(webhook_keys).where(old_keys))
                if not _first_time(conn, provider, request_key, now):
                    return None
            return [
                _record_one(conn, provider, signal, match, bounce_threshold, now)
                for signal, match in items
            ]

    def prune_webhook_keys(self, now: datetime) -> int:
        query = sa.delete(webhook_keys).where(webhook_keys.c.seen_at < now - KEEP_KEYS)
        with self._write("prune_webhook_keys") as conn:
            return int(conn.execute(query).rowcount)

    # reading for status, metrics and the dashboard

    def signal_tallies(self, issue_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """Per issue, how many readers had a report of each kind: readers, not reports, so one
        reader's complaint that came by two routes, or a pile of forged feedback reports about
        the one digest their sender really got, counts once in the issue's rates.

        Only reports that found a reader count (an unmatched one names no issue). A repeat
        (`_record_one`) is left out; a reader erased since keeps their one report, as a row
        without a subscriber. A hard bounce of a reader the relay refused during the send is
        left to the ledger, which counts that refusal (see `failed_details`).
        """
        ids = list(issue_ids)
        events = signal_events.c
        refused = (
            sa.select(deliveries.c.subscriber_id)
            .where(
                deliveries.c.issue_id == events.issue_id,
                deliveries.c.subscriber_id == events.subscriber_id,
                deliveries.c.status == DeliveryStatus.FAILED.value,
            )
            .exists()
        )
        erased = sa.func.sum(sa.case((events.subscriber_id.is_(None), 1), else_=0))
        readers = sa.func.count(sa.distinct(events.subscriber_id)) + erased
        query = (
            sa.select(events.issue_id, events.kind, readers)
            .where(
                events.issue_id.in_(ids),
                events.matched_by != "",
                events.outcome != REPEAT,
                sa.or_(events.kind != "hard_bounce", ~refused),
            )
            .group_by(events.issue_id, events.kind)
        )
        tallies: dict[int, dict[str, int]] = {issue_id: {} for issue_id in ids}
        with self.engine.connect() as conn:
            for issue_id, kind, count in conn.execute(query):
                tallies[int(issue_id)][str(kind)] = int(count)
        return tallies

    def failed_details(self, issue_ids: Iterable[int]) -> dict[int, list[str]]:
        """Per issue, the detail of each `failed` ledger row: the relay's reply (or why no
        message was made), from which `signals.rates` tells the dead mailboxes from policy
        refusals with the same rule the send used. Failed rows are few: read by the index."""
        ids = list(issue_ids)
        query = sa.select(deliveries.c.issue_id, deliveries.c.detail).where(
            deliveries.c.issue_id.in_(ids),
            deliveries.c.status == DeliveryStatus.FAILED.value,
        )
        found: dict[int, list[str]] = {issue_id: [] for issue_id in ids}
        with self.engine.connect() as conn:
            for issue_id, detail in conn.execute(query):
                found[int(issue_id)].append(str(detail))
        return found

    def signal_totals(self) -> dict[tuple[str, str, str], int]:
        """(provider, kind, outcome) -> count, over all time: the metrics' counters."""
        columns = (signal_events.c.provider, signal_events.c.kind, signal_events.c.outcome)
        query = sa.select(*columns, sa.func.count()).group_by(*columns)
        with self.engine.connect() as conn:
            return {(str(p), str(k), str(o)): int(n) for p, k, o, n in conn.execute(query)}

    def recent_signals(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest reports, for the dashboard (no addresses are stored)."""
        query = (
            sa.select(signal_events, issues.c.issue_date)
            .outerjoin(issues, issues.c.id == signal_events.c.issue_id)
            .order_by(signal_events.c.received_at.desc(), signal_events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def event_times(self, since: datetime) -> dict[str, list[datetime]]:
        """Timestamps since `since` of sign-ups, confirmations, unsubscribes, bounces and
        complaints, for charts bucketed by the caller (in the newsletter's time zone)."""
        columns = {
            "sign-ups": subscribers.c.created_at,
            "confirmations": subscribers.c.confirmed_at,
            "unsubscribes": subscribers.c.unsubscribed_at,
        }
        found: dict[str, list[datetime]] = {}
        with self.engine.connect() as conn:
            for name, column in columns.items():
                found[name] = list(conn.scalars(sa.select(column).where(column >= since)))
            for name, kind in (("bounces", "hard_bounce"), ("complaints", "complaint")):
                query = sa.select(signal_events.c.received_at).where(
                    signal_events.c.kind == kind,
                    signal_events.c.received_at >= since,
                    signal_events.c.outcome != REPEAT,  # the same reader's same bounce again
                )
                found[name] = list(conn.scalars(query))
        return found

    def ledger_by_issue(self, issue_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """Per issue, ledger rows by delivery status (one query for the dashboard's table)."""
        ids = list(issue_ids)
        query = (
            sa.select(deliveries.c.issue_id, deliveries.c.status, sa.func.count())
            .where(deliveries.c.issue_id.in_(ids))
            .group_by(deliveries.c.issue_id, deliveries.c.status)
        )
        counts: dict[int, dict[str, int]] = {issue_id: {} for issue_id in ids}
        with self.engine.connect() as conn:
            for issue_id, status, count in conn.execute(query):
                counts[int(issue_id)][str(status)] = int(count)
        return counts

    # feed health

    def record_feed_reports(self, reports: Sequence[FeedReport], now: datetime) -> None:
        rows = [
            {
                "url": r.url, "name": r.name, "fetched_at": now, "ok": r.ok,
                "articles": r.articles, "not_modified": r.not_modified,
                "error": r.error or "", "note": r.note or "",
            }
            for r in reports
        ]  # fmt: skip
        with self._write("record_feed_reports") as conn:
            old = feed_fetches.c.fetched_at < now - KEEP_FETCHES
            conn.execute(sa.delete(feed_fetches).where(old))
            if rows:
                conn.execute(sa.insert(feed_fetches), rows)

    def feed_health(self, since: datetime) -> list[dict[str, Any]]:
        """Per feed URL: the last fetch, the last success, and failures since `since`."""
        query = sa.select(feed_fetches).order_by(feed_fetches.c.fetched_at, feed_fetches.c.id)
        feeds: dict[str, dict[str, Any]] = {}
        failures: dict[str, int] = defaultdict(int)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                entry = feeds.setdefault(row.url, {"url": row.url, "last_ok": None})
                entry.update(name=row.name, last=dict(row._mapping))
                if row.ok:
                    entry["last_ok"] = row.fetched_at
                elif row.fetched_at >= since:
                    failures[row.url] += 1
        for url, entry in feeds.items():
            entry["failures"] = failures[url]
        return list(feeds.values())

    def daily_sent(self, since: date) -> dict[date, int]:
        """Messages sent per issue date since `since` (the ledger's sent rows)."""
        query = (
            sa.select(issues.c.issue_date, sa.func.count())
            .join(deliveries, deliveries.c.issue_id == issues.c.id)
            .where(
                issues.c.issue_date >= since,
                deliveries.c.status == DeliveryStatus.SENT.value,
            )
            .group_by(issues.c.issue_date)
        )
        with self.engine.connect() as conn:
            return {day: int(count) for day, count in conn.execute(query)}


def _first_time(conn: Connection, provider: str, key: str, now: datetime) -> bool:
    """Remember the request key; False if it was there already (one atomic statement)."""
    statement = (
        dialect_insert(conn.dialect.name, webhook_keys)
        .values(provider=provider, request_key=storable(key[:200]), seen_at=now)
        .on_conflict_do_nothing(index_elements=["provider", "request_key"])
        .returning(webhook_keys.c.request_key)  # rowcount is -1 here on psycopg
    )
    return conn.execute(statement).first() is not None


def _record_one(
    conn: Connection,
    provider: str,
    signal: SignalRow,
    match: MatchRow | None,
    threshold: int,
    now: datetime,
) -> str:
    seen = sa.select(signal_events.c.id).where(
        signal_events.c.provider == provider, signal_events.c.event_key == signal.event_key
    )
    if conn.scalar(seen) is not None:
        return "duplicate"
    if match is None:
        outcome = "unmatched"
    elif _reported_before(conn, signal.kind, match):
        outcome = REPEAT
    else:
        outcome = _apply(conn, signal.kind, match, threshold, now)
    conn.execute(
        sa.insert(signal_events).values(
            provider=provider,
            event_key=signal.event_key,
            kind=str(signal.kind),
            issue_id=None if match is None else match.issue_id,
            subscriber_id=None if match is None else match.subscriber_id,
            matched_by="" if match is None else match.by,
            outcome=outcome,
            detail=signal.detail,
            occurred_at=signal.occurred_at,
            received_at=now,
        )
    )
    return outcome


def _reported_before(conn: Connection, kind: str, match: MatchRow) -> bool:
    """Whether this reader already has a report of this kind about this issue.

    Then the new one is a repeat: the same complaint or bounce by another route (a DSN and a
    webhook, two feedback loops), or a forged copy. It is recorded for the operator, changes
    nothing and counts nowhere: the reader was already unsubscribed or counted once for this
    issue's bounce, and a reader who has confirmed again since made a newer choice. The
    reader's row is locked first (PostgreSQL), so two requests at once cannot both be first.
    """
    if match.issue_id is None:
        return False  # found by VERP with no issue sent: nothing to be a repeat of
    lock = sa.select(subscribers.c.id).where(subscribers.c.id == match.subscriber_id)
    conn.execute(lock.with_for_update())
    earlier = sa.select(signal_events.c.id).where(
        signal_events.c.issue_id == match.issue_id,
        signal_events.c.subscriber_id == match.subscriber_id,
        signal_events.c.kind == str(kind),
        signal_events.c.outcome != REPEAT,
    )
    return conn.scalar(earlier.limit(1)) is not None


def _apply(conn: Connection, kind: str, match: MatchRow, threshold: int, now: datetime) -> str:
    if kind == "hard_bounce":
        reached = count_hard_bounce(conn, match.subscriber_id, threshold, now)
        return "bounced" if reached else "counted"
    if kind == "complaint":
        status = conn.scalar(
            sa.select(subscribers.c.status).where(subscribers.c.id == match.subscriber_id)
        )
        if status in (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value):
            change_status(conn, match.subscriber_id, SubscriberStatus.UNSUBSCRIBED, now)
            return "unsubscribed"
        return "complaint"
    return "soft"
