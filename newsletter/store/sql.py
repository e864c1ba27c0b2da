"""The subscriber store: `ports.Store` on SQLite or PostgreSQL through SQLAlchemy Core.

Every method is its own short transaction, so a crash loses at most the call in flight and the
ledger is always as current as the last reply from the mail server. Long listings are read in
keyset pages (``id > last ORDER BY id LIMIT n``), each page on its own connection that is
closed before any row is handed out: the sender writes ledger rows between pages, and on SQLite
a read cursor left open would hold the database against those writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.errors import ReadOnlyStoreError, StoreError
from newsletter.models import (
    Batch,
    DeliveryStatus,
    Digest,
    FeedState,
    Frequency,
    Issue,
    IssueStatus,
    Outcome,
    Subscriber,
    SubscriberStatus,
)
from newsletter.store import engine as store_engine
from newsletter.store import migrate
from newsletter.store.batches import BatchMixin
from newsletter.store.consent import ConsentMixin
from newsletter.store.engine import upsert
from newsletter.store.entries import EntriesMixin
from newsletter.store.imports import ImportMixin
from newsletter.store.issues import (
    count_issues_before,
    insert_issue,
    load_issue,
    select_sent_article_ids,
    update_issue_status,
)
from newsletter.store.ledger import LedgerMixin
from newsletter.store.preferences import PreferencesMixin
from newsletter.store.schema import deliveries, feed_state, issues, subscribers
from newsletter.store.signals import SignalsMixin
from newsletter.store.subscribers import (
    change_status,
    insert_subscriber,
    subscriber_row,
    to_subscriber,
    update_existing,
)

PAGE_SIZE = 1000

# The ledger detail of a reader an issue ended without (`close`, or abandoned unreached).
NEVER_TRIED = "never tried: the issue ended first"


class SqlStore(
    LedgerMixin,
    ConsentMixin,
    EntriesMixin,
    BatchMixin,
    ImportMixin,
    PreferencesMixin,
    SignalsMixin,
):
    """`ports.Store` on an Engine made by `store_engine` (it needs that module's SQLite hooks)."""

    def __init__(
        self, engine: Engine, *, read_only: bool = False, page_size: int = PAGE_SIZE
    ) -> None:
        self.engine = engine
        self.read_only = read_only
        self._page_size = page_size
        self._writer = store_engine.writer(engine)

    def close(self) -> None:
        """Release pooled connections (lets SQLite checkpoint and remove its WAL file)."""
        self.engine.dispose()

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        if self.read_only:
            raise ReadOnlyStoreError(f"{operation}: the store is open read-only (dry run)")
        return self._writer.begin()

    # subscribers

    def add_subscriber(
        self,
        email: str,
        *,
        status: SubscriberStatus,
        source: str,
        now: datetime,
        mailbox: str | None = None,
    ) -> Subscriber:
        """Insert a new address, or apply the one change an existing one may get here.

        A suppressed address is never brought back by this path (it needs fresh consent);
        a pending one becomes active when asked; anything else is returned unchanged.
        `mailbox` is where the address is delivered (`addresses.mailbox_key`, worked out by the
        caller); without it the address is its own mailbox.
        """
        with self._write("add_subscriber") as conn:
            by_email = subscribers.c.email == email
            row = subscriber_row(conn, by_email)
            if row is None:
                added = insert_subscriber(conn, email, status, source, now, mailbox)
                if added is not None:
                    return added
                row = subscriber_row(conn, by_email)  # a concurrent add won the race
                assert row is not None
            return update_existing(conn, row, status, now)

    def get_subscriber(self, email: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = subscriber_row(conn, subscribers.c.email == email)
        return None if row is None else to_subscriber(row)

    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = subscriber_row(conn, subscribers.c.id == subscriber_id)
        return None if row is None else to_subscriber(row)

    def set_status(self, subscriber_id: int, status: SubscriberStatus, now: datetime) -> None:
        """Any transition is allowed here: this is the deliberate path (confirm, unsubscribe)."""
        with self._write("set_status") as conn:
            row = subscriber_row(conn, subscribers.c.id == subscriber_id)
            if row is None:
                raise StoreError(f"no subscriber with id {subscriber_id}")
            if row.status != status.value:  # repeats keep the first timestamps
                change_status(conn, subscriber_id, status, now)

    def iter_subscribers(self, status: SubscriberStatus | None = None) -> Iterator[Subscriber]:
        where = sa.true() if status is None else subscribers.c.status == status.value
        return self._pages(where, self._page_size)

    def count_by_status(self) -> dict[SubscriberStatus, int]:
        counts = dict.fromkeys(SubscriberStatus, 0)
        query = sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status)
        with self.engine.connect() as conn:
            for status, count in conn.execute(query):
                counts[SubscriberStatus(status)] = count
        return counts

    def count_active(self, frequency: Frequency) -> int:
        """Active readers who chose this frequency."""
        query = sa.select(sa.func.count()).where(
            subscribers.c.status == SubscriberStatus.ACTIVE.value,
            subscribers.c.frequency == frequency.value,
        )
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    # issues

    def get_issue(self, newsletter: str, issue_date: date) -> Issue | None:
        with self.engine.connect() as conn:
            return load_issue(conn, _issue_on(newsletter, issues.c.issue_date == issue_date))

    def previous_issue(self, newsletter: str, issue_date: date) -> Issue | None:
        """The latest issue before `issue_date` that was not abandoned: "since last time" starts
        at its cutoff, so an abandoned day's articles fall into the next issue's window."""
        where = sa.and_(
            issues.c.issue_date < issue_date, issues.c.status != IssueStatus.ABANDONED.value
        )
        with self.engine.connect() as conn:
            return load_issue(conn, _issue_on(newsletter, where))

    def count_issues(self, newsletter: str, before: date) -> int:
        """How many issues went out before that date: the next issue's number less one."""
        with self.engine.connect() as conn:
            return count_issues_before(conn, newsletter, before)

    def create_issue(
        self,
        newsletter: str,
        issue_date: date,
        cutoff: datetime,
        digest: Digest,
        now: datetime,
        kind: Frequency = Frequency.DAILY,
    ) -> Issue:
        """Freeze the digest as today's issue; StoreError if another run got there first."""
        with self._write("create_issue") as conn:
            issue_id = insert_issue(conn, newsletter, issue_date, cutoff, digest, now, kind)
            issue = load_issue(conn, issues.c.id == issue_id)
        assert issue is not None  # just inserted in this transaction
        return issue

    def set_issue_status(self, issue_id: int, status: IssueStatus, now: datetime) -> None:
        with self._write("set_issue_status") as conn:
            update_issue_status(conn, issue_id, status, now)

    def sent_article_ids(self, newsletter: str, article_ids: Iterable[str]) -> set[str]:
        with self.engine.connect() as conn:
            return select_sent_article_ids(conn, newsletter, article_ids)

    # audience and ledger

    def pending_recipients(
        self,
        issue_id: int,
        batch_size: int = 1000,
        retry_due: datetime | None = None,
        within: Batch | None = None,
    ) -> Iterator[Subscriber]:
        """Active subscribers without an outcome for the issue, re-checked page by page.

        With `retry_due`, DEFERRED rows whose next attempt is due by then count as no outcome;
        with `within`, only that batch's range of ids. A row recorded while iterating (by this
        run or a concurrent one) drops that subscriber from the pages not yet read.
        """
        where = self._unsettled(issue_id, retry_due)
        if within is None:
            return self._pages(where, batch_size)
        return self._pages(sa.and_(where, subscribers.c.id <= within.high), batch_size, within.low)

    def untried_count(self, issue_id: int) -> int:
        """Readers of the issue without any ledger row: never tried, so never closed away."""
        query = sa.select(sa.func.count()).select_from(subscribers)
        with self.engine.connect() as conn:
            return int(conn.scalar(query.where(self._unsettled(issue_id, None))) or 0)

    def any_untried(self, issue_id: int) -> bool:
        """Whether `untried_count` would be above zero, found at the first such reader."""
        query = sa.select(sa.exists().where(self._unsettled(issue_id, None)))
        with self.engine.connect() as conn:
            return bool(conn.scalar(query))

    def expire_deferred(self, issue_id: int, now: datetime) -> int:
        """Make the issue's deferred rows final (`expired`); return how many there were."""
        query = (
            sa.update(deliveries)
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.status == DeliveryStatus.DEFERRED.value,
            )
            .values(status=DeliveryStatus.EXPIRED.value, next_attempt=None, updated_at=now)
        )
        with self._write("expire_deferred") as conn:
            return int(conn.execute(query).rowcount)

    def expire_untried(self, issue_id: int, now: datetime) -> int:
        """Give the issue's never-tried readers a final `expired` row ("never tried") as it
        ends, so that it goes on saying how many never got it, counted from the index, whoever
        joins or leaves later; return how many there were. A row a sender writes meanwhile wins."""
        c = deliveries.c
        never_tried = sa.select(
            sa.literal(issue_id, c.issue_id.type),
            subscribers.c.id,
            sa.literal(DeliveryStatus.EXPIRED.value, c.status.type),
            sa.literal(NEVER_TRIED, c.detail.type),
            sa.literal(0, c.attempts.type),
            sa.literal(now, c.updated_at.type),
        ).where(self._unsettled(issue_id, None))
        columns = ["issue_id", "subscriber_id", "status", "detail", "attempts", "updated_at"]
        with self._write("expire_untried") as conn:
            insert = store_engine.dialect_insert(conn.dialect.name, deliveries)
            query = insert.from_select(columns, never_tried).on_conflict_do_nothing()
            # RETURNING, since psycopg reports no rowcount for INSERT ... SELECT here.
            return len(conn.execute(query.returning(c.subscriber_id)).all())

    def _unsettled(self, issue_id: int, retry_due: datetime | None) -> sa.ColumnElement[bool]:
        """The issue's readers who still need it: active, of the issue's frequency, confirmed
        before the issue was made (a later sign-up gets the next issue, so an issue's audience
        is fixed and it can end), and without an outcome (with `retry_due`: or deferred and due
        by then)."""
        created = sa.select(issues.c.created_at).where(issues.c.id == issue_id).scalar_subquery()
        kind = sa.select(issues.c.kind).where(issues.c.id == issue_id).scalar_subquery()
        settled = sa.exists().where(
            deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id
        )
        if retry_due is not None:
            settled = settled.where(
                sa.or_(
                    deliveries.c.status != DeliveryStatus.DEFERRED.value,
                    deliveries.c.next_attempt > retry_due,
                )
            )
        confirmed = sa.or_(
            subscribers.c.confirmed_at.is_(None), subscribers.c.confirmed_at <= created
        )
        active = subscribers.c.status == SubscriberStatus.ACTIVE.value
        return sa.and_(active, subscribers.c.frequency == kind, confirmed, ~settled)

    def record_outcome(
        self, issue_id: int, subscriber_id: int, outcome: Outcome, now: datetime
    ) -> None:
        """Upsert the ledger row. A SENT row is final: a later report never overwrites it."""
        self.record_outcomes(issue_id, [(subscriber_id, outcome)], now)

    def outcome_counts(self, issue_id: int) -> dict[str, int]:
        """Ledger rows of the issue by delivery status; statuses with no rows are left out."""
        query = (
            sa.select(deliveries.c.status, sa.func.count())
            .where(deliveries.c.issue_id == issue_id)
            .group_by(deliveries.c.status)
        )
        with self.engine.connect() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    # feed state

    def get_feed_state(self, url: str) -> FeedState | None:
        query = sa.select(feed_state).where(feed_state.c.url == url)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return FeedState(
            url=row.url,
            etag=row.etag,
            last_modified=row.last_modified,
            permanent_url=row.permanent_url,
            gone=bool(row.gone),
        )

    def save_feed_state(self, state: FeedState, now: datetime) -> None:
        values = {
            "url": state.url,
            "etag": state.etag,
            "last_modified": state.last_modified,
            "permanent_url": state.permanent_url,
            "gone": state.gone,
            "updated_at": now,
        }
        with self._write("save_feed_state") as conn:
            upsert(conn, feed_state, values, ("url",))

    # paging

    def _pages(
        self, where: sa.ColumnElement[bool], batch_size: int, after: int = 0
    ) -> Iterator[Subscriber]:
        """Yield matching subscribers in id order, one short-lived connection per page."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        last_id = after
        while True:
            query = (
                sa.select(subscribers)
                .where(where, subscribers.c.id > last_id)
                .order_by(subscribers.c.id)
                .limit(batch_size)
            )
            with self.engine.connect() as conn:
                page = conn.execute(query).all()
            yield from (to_subscriber(row) for row in page)
            if len(page) < batch_size:
                return
            last_id = page[-1].id


def open_store(url: str, *, read_only: bool = False) -> SqlStore:
    """Open (and, unless read-only, create or upgrade) the store at a database URL.

    Read-only is the dry run: nothing on disk or on the server changes. A SQLite file that does
    not exist yet is not created; the dry run gets an empty in-memory store instead.
    """
    parsed = store_engine.parse_url(url)
    path = store_engine.sqlite_path(parsed)
    in_memory = parsed.get_backend_name() == "sqlite" and path is None
    use_memory = in_memory or (read_only and path is not None and not path.exists())
    if use_memory:
        engine = store_engine.memory_engine()
    else:
        engine = store_engine.file_engine(parsed, read_only=read_only)
    try:
        if read_only and not use_memory:  # a real database: check it, never change it
            migrate.check_current(engine)
        else:
            migrate.migrate(engine)
    except StoreError as exc:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        cause = exc.__cause__ or exc
        raise StoreError(f"cannot open the store at {shown}: {cause}") from exc
    except BaseException:
        engine.dispose()
        raise
    return SqlStore(engine, read_only=read_only)


def _issue_on(newsletter: str, when: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.and_(issues.c.newsletter == newsletter, when)
