"""The SQL store against both databases: semantics of `ports.Store`, migrations, read-only mode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.errors import ReadOnlyStoreError, StoreError, SuppressedAddressError
from newsletter.models import (
    DeliveryStatus,
    Digest,
    FeedState,
    IssueStatus,
    Outcome,
    SubscriberStatus,
)
from newsletter.ports import Store
from newsletter.store import SqlStore, open_store
from newsletter.store.engine import parse_url
from newsletter.store.schema import subscribers

NOW = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED, BOUNCED = SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED


def digest(*article_ids: str) -> Digest:
    return Digest("Subject", "Preheader", "<p>html</p>", "text", article_ids)


def add(store: Store, email: str, status: SubscriberStatus = ACTIVE) -> int:
    return store.add_subscriber(email, status=status, source="test", now=NOW).id


def add_at(store: Store, email: str, now: datetime) -> int:
    return store.add_subscriber(email, status=ACTIVE, source="test", now=now).id


def status_of(store: Store, email: str) -> SubscriberStatus | None:
    subscriber = store.get_subscriber(email)
    return None if subscriber is None else subscriber.status


def bulk_add(store: SqlStore, count: int) -> None:
    """Many active subscribers in one statement: the paging tests need volume, not realism."""
    rows = [
        {"email": f"r{n:05}@example.com", "status": "active", "created_at": NOW, "updated_at": NOW}
        for n in range(count)
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(subscribers), rows)


def test_sql_store_satisfies_the_protocol(store: SqlStore) -> None:
    typed: Store = store  # mypy checks the structural match
    assert typed is store


# subscribers


def test_add_and_get_subscriber(store: SqlStore) -> None:
    added = store.add_subscriber("ann@example.com", status=PENDING, source="form", now=NOW)
    assert (added.email, added.status, added.source) == ("ann@example.com", PENDING, "form")
    assert added.created_at == NOW and added.created_at.tzinfo is not None
    assert store.get_subscriber("ann@example.com") == added
    assert store.get_subscriber_by_id(added.id) == added
    assert store.get_subscriber("bob@example.com") is None
    assert store.get_subscriber_by_id(added.id + 1) is None


def test_a_normalized_address_is_stored_once(store: SqlStore) -> None:
    first = add(store, "ann@example.com")
    assert add(store, "ann@example.com") == first
    assert store.count_by_status()[ACTIVE] == 1
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.insert(subscribers).values(
                email="ann@example.com", status="active", created_at=NOW, updated_at=NOW
            )
        )


@pytest.mark.parametrize(
    ("left_as", "reason"),
    [(UNSUBSCRIBED, "unsubscribed on 2024-05-01; needs fresh confirmation"), (BOUNCED, "bounced")],
)
@pytest.mark.parametrize("again_as", [ACTIVE, PENDING])
def test_a_suppressed_address_is_not_revived(
    store: SqlStore, left_as: SubscriberStatus, reason: str, again_as: SubscriberStatus
) -> None:
    subscriber_id = add(store, "ann@example.com")
    store.set_status(subscriber_id, left_as, NOW)
    with pytest.raises(SuppressedAddressError) as caught:
        store.add_subscriber("ann@example.com", status=again_as, source="form", now=NOW)
    assert caught.value.reason == reason
    assert status_of(store, "ann@example.com") is left_as
    assert add(store, "ann@example.com", left_as) == subscriber_id  # same status: a no-op


def test_a_pending_address_is_confirmed_and_an_active_one_kept(store: SqlStore) -> None:
    add(store, "ann@example.com", PENDING)
    later = NOW + timedelta(hours=1)
    confirmed = store.add_subscriber("ann@example.com", status=ACTIVE, source="x", now=later)
    assert (confirmed.status, confirmed.updated_at, confirmed.source) == (ACTIVE, later, "test")
    again = store.add_subscriber("ann@example.com", status=PENDING, source="x", now=later)
    assert again == confirmed


def test_set_status_and_count_by_status(store: SqlStore) -> None:
    ids = [add(store, f"{n}@example.com") for n in range(4)]
    add(store, "p@example.com", PENDING)
    store.set_status(ids[0], UNSUBSCRIBED, NOW + timedelta(days=1))
    store.set_status(ids[1], BOUNCED, NOW)
    assert store.count_by_status() == {ACTIVE: 2, PENDING: 1, UNSUBSCRIBED: 1, BOUNCED: 1}
    unsubscribed = store.get_subscriber_by_id(ids[0])
    assert unsubscribed is not None and unsubscribed.updated_at == NOW + timedelta(days=1)
    with pytest.raises(StoreError):
        store.set_status(9999, ACTIVE, NOW)


def test_count_by_status_of_an_empty_store_has_every_key(store: SqlStore) -> None:
    assert store.count_by_status() == dict.fromkeys(SubscriberStatus, 0)


def test_iter_subscribers_streams_in_id_order_with_writes_between_pages(store: SqlStore) -> None:
    bulk_add(store, 2500)
    pages = count_statements(store, "ORDER BY subscribers.id")
    seen = []
    for n, subscriber in enumerate(store.iter_subscribers(ACTIVE)):
        seen.append(subscriber.id)
        if n % 500 == 0:  # a write while the listing is in progress must not be blocked
            store.set_status(subscriber.id, UNSUBSCRIBED, NOW)
        if n == 0:  # rows added mid-listing still come: every page is a fresh query
            add(store, "late@example.com")
    assert len(seen) == 2501 and seen == sorted(seen)
    assert len(pages) == 3  # 1000 + 1000 + 501: one short query per page, none held open
    assert [s.id for s in store.iter_subscribers(UNSUBSCRIBED)] == seen[::500]
    assert sum(1 for _ in store.iter_subscribers()) == 2501


def count_statements(store: SqlStore, fragment: str) -> list[str]:
    """Every SELECT the engine runs from now on that contains `fragment`."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and fragment in statement:
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", listen)
    return seen


# audience and ledger


def test_pending_recipients_skips_inactive_and_recorded(store: SqlStore) -> None:
    a, b, c, d = (add(store, f"{x}@example.com") for x in "abcd")
    add(store, "p@example.com", PENDING)
    store.set_status(add(store, "u@example.com"), UNSUBSCRIBED, NOW)
    issue = store.create_issue("ree", date(2024, 5, 1), NOW, digest(), NOW)
    store.record_outcome(issue.id, b, Outcome(DeliveryStatus.FAILED), NOW)
    got = []
    for subscriber in store.pending_recipients(issue.id, batch_size=1):
        got.append(subscriber.id)
        store.record_outcome(issue.id, subscriber.id, Outcome(DeliveryStatus.SENT), NOW)
        if subscriber.id == a:  # e.g. a concurrent run got to d first
            store.record_outcome(issue.id, d, Outcome(DeliveryStatus.SENT), NOW)
    assert got == [a, c]
    assert list(store.pending_recipients(issue.id)) == []


def test_record_outcome_upserts_and_counts(store: SqlStore) -> None:
    a, b, c = (add(store, f"{x}@example.com") for x in "abc")
    issue = store.create_issue("ree", date(2024, 5, 1), NOW, digest(), NOW)
    retry_at = NOW + timedelta(minutes=30)
    deferred = Outcome(DeliveryStatus.DEFERRED, "451 later", attempts=1, next_attempt=retry_at)
    store.record_outcome(issue.id, a, deferred, NOW)
    store.record_outcome(issue.id, b, deferred, NOW)
    store.record_outcome(issue.id, c, Outcome(DeliveryStatus.FAILED, "550 no"), NOW)
    assert store.outcome_counts(issue.id) == {"deferred": 2, "failed": 1}
    sent = Outcome(DeliveryStatus.SENT, "250 ok", message_id="<m@x>", attempts=2)
    store.record_outcome(issue.id, a, sent, retry_at)
    store.record_outcome(issue.id, a, Outcome(DeliveryStatus.FAILED), retry_at)  # SENT is final
    assert store.outcome_counts(issue.id) == {"sent": 1, "deferred": 1, "failed": 1}
    assert store.outcome_counts(issue.id + 1) == {}


# issues


def test_create_issue_round_trips_with_utc_datetimes(store: SqlStore) -> None:
    cutoff = datetime(2024, 5, 1, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    created = store.create_issue("ree", date(2024, 5, 1), cutoff, digest("z", "a", "m"), NOW)
    assert created.status is IssueStatus.SENDING and created.sent_at is None
    assert created.cutoff == cutoff and created.cutoff.utcoffset() == timedelta(0)
    assert created.digest == digest("z", "a", "m")  # article order kept
    assert store.get_issue("ree", date(2024, 5, 1)) == created
    assert store.get_issue("other", date(2024, 5, 1)) is None
    store.set_issue_status(created.id, IssueStatus.SENT, NOW + timedelta(hours=1))
    sent = store.get_issue("ree", date(2024, 5, 1))
    assert sent is not None and sent.status is IssueStatus.SENT
    assert sent.sent_at == NOW + timedelta(hours=1) and sent.sent_at.tzinfo == UTC


def test_an_issue_is_created_once_per_newsletter_and_day(store: SqlStore) -> None:
    store.create_issue("ree", date(2024, 5, 1), NOW, digest("a"), NOW)
    with pytest.raises(StoreError, match="already exists"):
        store.create_issue("ree", date(2024, 5, 1), NOW, digest("b"), NOW)
    assert store.sent_article_ids("ree", ["a", "b"]) == {"a"}  # the failed create left nothing
    store.create_issue("other", date(2024, 5, 1), NOW, digest("a"), NOW)  # other newsletter
    with pytest.raises(StoreError, match="earlier issue"):
        store.create_issue("ree", date(2024, 5, 2), NOW, digest("c", "a"), NOW)
    assert store.get_issue("ree", date(2024, 5, 2)) is None
    with pytest.raises(StoreError):
        store.set_issue_status(9999, IssueStatus.SENT, NOW)


def test_previous_issue_is_the_latest_before_the_date(store: SqlStore) -> None:
    for day in (1, 3, 6):
        store.create_issue("ree", date(2024, 5, day), NOW, digest(f"a{day}"), NOW)
    store.create_issue("other", date(2024, 5, 5), NOW, digest(), NOW)
    previous = store.previous_issue("ree", date(2024, 5, 6))
    assert previous is not None and previous.issue_date == date(2024, 5, 3)
    assert previous.digest.article_ids == ("a3",)
    assert store.previous_issue("ree", date(2024, 5, 1)) is None


def test_sent_article_ids_across_chunks(store: SqlStore) -> None:
    sent = [f"id-{n}" for n in range(1200)]
    store.create_issue("ree", date(2024, 5, 1), NOW, digest(*sent), NOW)
    asked = [*sent[::7], "new-1", "new-2"]
    assert store.sent_article_ids("ree", iter(asked)) == set(sent[::7])
    assert store.sent_article_ids("other", asked) == set()
    assert store.sent_article_ids("ree", []) == set()


# feed state


def test_feed_state_upsert(store: SqlStore) -> None:
    url = "https://example.com/feed.xml"
    assert store.get_feed_state(url) is None
    store.save_feed_state(FeedState(url, etag='"1"', last_modified="Wed, 01 May 2024"), NOW)
    assert store.get_feed_state(url) == FeedState(url, '"1"', "Wed, 01 May 2024")
    moved = FeedState(url, permanent_url="https://example.org/feed", gone=True)
    store.save_feed_state(moved, NOW)
    assert store.get_feed_state(url) == moved


def test_record_outcome_for_an_unknown_issue_is_a_store_error(store: SqlStore) -> None:
    subscriber_id = add(store, "ann@example.com")
    with pytest.raises(StoreError, match="no issue 42"):
        store.record_outcome(42, subscriber_id, Outcome(DeliveryStatus.SENT), NOW)


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        add_at(store, "a@example.com", NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    "url", ["mysql://u@localhost/db", "not a url", "postgresql+psycopg://postgres@127.0.0.1:1/x"]
)
def test_unusable_urls_are_store_errors(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url)


def test_plain_postgresql_urls_use_psycopg_and_sqlite_can_be_in_memory() -> None:
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    memory = open_store("sqlite://")
    add(memory, "ann@example.com")
    assert status_of(memory, "ann@example.com") is ACTIVE
    memory.close()


# read-only (dry run)

WRITES: list[Callable[[Store], object]] = [
    lambda s: s.add_subscriber("x@example.com", status=ACTIVE, source="", now=NOW),
    lambda s: s.set_status(1, UNSUBSCRIBED, NOW),
    lambda s: s.create_issue("ree", date(2024, 5, 2), NOW, digest("b"), NOW),
    lambda s: s.set_issue_status(1, IssueStatus.SENT, NOW),
    lambda s: s.record_outcome(1, 1, Outcome(DeliveryStatus.SENT), NOW),
    lambda s: s.save_feed_state(FeedState("https://example.com/feed"), NOW),
]


def snapshot(store: Store) -> tuple[object, ...]:
    issue = store.get_issue("ree", date(2024, 5, 1))
    feed = store.get_feed_state("https://example.com/feed")
    return list(store.iter_subscribers()), issue, feed, store.outcome_counts(1)


def test_read_only_refuses_writes_and_changes_nothing(store: SqlStore, store_url: str) -> None:
    add(store, "ann@example.com")
    store.create_issue("ree", date(2024, 5, 1), NOW, digest("a"), NOW)
    before = snapshot(store)
    store.close()
    db_file = sqlite_file(store_url)
    file_bytes = db_file.read_bytes() if db_file else b""
    dry = open_store(store_url, read_only=True)
    try:
        assert snapshot(dry) == before
        for write in WRITES:
            with pytest.raises(ReadOnlyStoreError):
                write(dry)
        with pytest.raises(StoreError), dry.engine.begin() as conn:  # the database refuses too
            conn.execute(sa.delete(subscribers))
    finally:
        dry.close()
    reopened = open_store(store_url, read_only=True)
    assert snapshot(reopened) == before
    reopened.close()
    assert db_file is None or db_file.read_bytes() == file_bytes


def test_read_only_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    db_file = tmp_path / "absent" / "subscribers.db"
    dry = open_store(f"sqlite:///{db_file}", read_only=True)
    assert dry.count_by_status() == dict.fromkeys(SubscriberStatus, 0)
    assert list(dry.pending_recipients(1)) == [] and dry.get_issue("ree", NOW.date()) is None
    with pytest.raises(ReadOnlyStoreError):
        add(dry, "ann@example.com")
    dry.close()
    assert not db_file.parent.exists()


def test_read_only_on_an_unmigrated_database_says_to_migrate(store_url: str) -> None:
    db_file = sqlite_file(store_url)
    if db_file is not None:  # an existing but empty SQLite file (an empty file is a valid db)
        db_file.parent.mkdir(parents=True)
        db_file.touch()
    with pytest.raises(StoreError, match="without --dry-run"):
        open_store(store_url, read_only=True)


def sqlite_file(store_url: str) -> Path | None:
    url = sa.make_url(store_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
