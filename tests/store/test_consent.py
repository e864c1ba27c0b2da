"""Consent records, erasure and the archive listing, on SQLite and PostgreSQL (`store` fixture)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from newsletter.addresses import mailbox_key
from newsletter.models import (
    ConsentRequest,
    DeliveryStatus,
    Digest,
    MailLimits,
    Outcome,
    SubscriberStatus,
)
from newsletter.store import SqlStore, open_store
from newsletter.store.schema import consents as consent_table
from newsletter.store.schema import metadata
from newsletter.store.schema import subscribers as subscriber_table

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED, BOUNCED = SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED
LATER = timedelta(seconds=1)


def add(store: SqlStore, email: str, status: SubscriberStatus = PENDING) -> int:
    """As the service adds one: with its mailbox worked out by the address rules."""
    mailbox = mailbox_key(email)
    return store.add_subscriber(email, status=status, source="test", now=NOW, mailbox=mailbox).id


def ask(store: SqlStore, subscriber_id: int, at: datetime, per_day: int = 3) -> str:
    request = ConsentRequest(
        consent_version="2026-11-v1",
        source="subscribe-page",
        page_url="https://ree-news.example.com/",
        ip="192.0.2.7",
        user_agent="Firefox/140",
        mail_sha256="ab" * 32,
        mail_message_id="<confirm.1@ree-news.example.com>",
    )
    return store.record_consent_request(
        subscriber_id, request, MailLimits(timedelta(minutes=10), per_day), at
    )


def confirm(store: SqlStore, subscriber_id: int, link_signed: datetime, **kw: Any) -> str:
    return store.confirm_consent(
        subscriber_id,
        now=link_signed + timedelta(hours=1),
        ip="198.51.100.9",
        user_agent="Safari/18",
        requested_before=link_signed + LATER,
        **kw,
    )


def consents(store: SqlStore, email: str) -> list[dict[str, Any]]:
    exported = store.export_subscriber(email)
    assert exported is not None
    return list(exported["consents"])


def test_requests_keep_the_resend_window_and_the_daily_cap(store: SqlStore) -> None:
    sid = add(store, "ann@example.org")
    assert ask(store, sid, NOW) == "recorded"
    assert ask(store, sid, NOW + timedelta(minutes=9)) == "too-soon"
    assert ask(store, sid, NOW + timedelta(minutes=11)) == "recorded"
    assert ask(store, sid, NOW + timedelta(minutes=22)) == "recorded"
    assert ask(store, sid, NOW + timedelta(hours=5)) == "daily-limit"
    assert ask(store, sid, NOW + timedelta(days=1, minutes=1)) == "recorded"
    assert ask(store, 9999, NOW) == "unknown"
    assert len(consents(store, "ann@example.org")) == 4


def test_concurrent_requests_for_one_address_record_one(store_url: str) -> None:
    """Eight sign-ups at the same moment: the row lock lets exactly one mail through."""
    stores = [open_store(store_url) for _ in range(8)]
    try:
        sid = add(stores[0], "race@example.org")
        results: list[str] = []
        barrier = threading.Barrier(len(stores))

        def worker(store: SqlStore) -> None:
            barrier.wait()
            results.append(ask(store, sid, NOW))

        threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["recorded"] + ["too-soon"] * 7
    finally:
        for store in stores:
            store.close()


def test_concurrent_requests_for_variants_of_one_mailbox_record_one(store_url: str) -> None:
    """Eight spellings of one inbox at the same moment: the mailbox lock lets one mail through."""
    stores = [open_store(store_url) for _ in range(8)]
    try:
        spellings = [f"r.a.c.e+{n}@gmail.com" if n % 2 else f"race+{n}@gmail.com" for n in range(8)]
        ids = [add(stores[0], spelling) for spelling in spellings]
        results: list[str] = []
        barrier = threading.Barrier(len(stores))

        def worker(store: SqlStore, sid: int) -> None:
            barrier.wait()
            results.append(ask(store, sid, NOW))

        threads = [
            threading.Thread(target=worker, args=(s, sid))
            for s, sid in zip(stores, ids, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["recorded"] + ["too-soon"] * 7
    finally:
        for store in stores:
            store.close()


def test_the_limits_count_per_mailbox(store: SqlStore) -> None:
    first = add(store, "jane.doe@gmail.com")
    tagged = add(store, "janedoe+news@googlemail.com")
    other = add(store, "jane.doe@example.org")
    elsewhere = add(store, "jane.doe+x@example.org")
    assert ask(store, first, NOW) == "recorded"
    assert ask(store, tagged, NOW + timedelta(minutes=5)) == "too-soon"
    assert ask(store, other, NOW + timedelta(minutes=5)) == "recorded"  # dots count here
    assert ask(store, elsewhere, NOW + timedelta(minutes=6)) == "too-soon"
    assert ask(store, tagged, NOW + timedelta(minutes=11)) == "recorded"
    assert ask(store, first, NOW + timedelta(minutes=22)) == "recorded"
    assert ask(store, tagged, NOW + timedelta(minutes=33)) == "daily-limit"
    assert ask(store, tagged, NOW + timedelta(days=1, seconds=1)) == "recorded"
    assert [r["subscriber_id"] for r in consent_rows(store)].count(tagged) == 2


def test_an_active_address_gets_no_request_but_the_same_work(store: SqlStore) -> None:
    sid = add(store, "reader@example.org", ACTIVE)
    assert ask(store, sid, NOW) == "already-active"
    assert consent_rows(store) == []
    assert ask(store, 10_000, NOW) == "unknown"


def test_pending_subscriber_inserts_a_new_address_and_changes_no_known_one(
    store: SqlStore,
) -> None:
    new = store.pending_subscriber(
        "New.Reader+x@gmail.com", mailbox="newreader@gmail.com", source="embed", now=NOW
    )
    assert (new.email, new.status, new.source) == ("New.Reader+x@gmail.com", PENDING, "embed")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", new.public_id)
    assert store.get_subscriber_by_public_id(new.public_id) == new
    assert store.get_subscriber_by_public_id("A" * 22) is None
    for status in (ACTIVE, UNSUBSCRIBED, BOUNCED):
        known = store.add_subscriber(f"{status}@example.org", status=status, source="t", now=NOW)
        again = store.pending_subscriber(
            known.email, mailbox=known.email, source="form", now=NOW + LATER
        )
        assert again == known
    with store.engine.connect() as conn:
        mailbox = conn.scalar(
            sa.select(subscriber_table.c.mailbox).where(subscriber_table.c.id == new.id)
        )
    assert mailbox == "newreader@gmail.com"
    unknown = store.add_subscriber("x.y+z@gmail.com", status=ACTIVE, source="t", now=NOW)
    with store.engine.connect() as conn:  # no mailbox given: the address is its own
        own = conn.scalar(
            sa.select(subscriber_table.c.mailbox).where(subscriber_table.c.id == unknown.id)
        )
    assert own == "x.y+z@gmail.com"


def consent_rows(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(consent_table))]


def test_confirm_answers_the_links_own_request_and_closes_the_rest(store: SqlStore) -> None:
    sid = add(store, "ann@example.org")
    first, second = NOW, NOW + timedelta(minutes=30)
    ask(store, sid, first)
    ask(store, sid, second)
    assert confirm(store, sid, first) == "confirmed"  # the older link confirms its request
    rows = consents(store, "ann@example.org")
    assert rows[0]["confirmed_at"] is not None and rows[0]["confirm_ip"] == "198.51.100.9"
    assert rows[0]["confirm_user_agent"] == "Safari/18"
    assert rows[1]["confirmed_at"] is None and rows[1]["closed_at"] is not None
    assert store.get_subscriber_by_id(sid).status is ACTIVE  # type: ignore[union-attr]
    assert confirm(store, sid, second) == "already-active"
    assert confirm(store, 9999, NOW) == "unknown"


def test_a_link_older_than_every_open_request_confirms_nothing(store: SqlStore) -> None:
    sid = add(store, "ann@example.org")
    ask(store, sid, NOW + timedelta(hours=1))
    assert confirm(store, sid, NOW) == "no-request"
    assert store.get_subscriber_by_id(sid).status is PENDING  # type: ignore[union-attr]


def test_a_suppressed_address_needs_a_request_made_after_suppression(store: SqlStore) -> None:
    sid = add(store, "back@example.org")
    ask(store, sid, NOW)
    store.set_status(sid, ACTIVE, NOW)  # activated by an import, request left open
    store.record_hard_bounce(sid, 1, NOW + timedelta(hours=1))
    assert confirm(store, sid, NOW) == "no-request"  # the old request cannot undo the bounce
    later = NOW + timedelta(days=2)
    ask(store, sid, later)
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO suppressions VALUES ('h1', 'erased', :t)"), {"t": NOW})
    assert store.is_suppressed(["h1", "h2"])
    assert confirm(store, sid, later, clear_hashes=["h1"]) == "confirmed"
    assert not store.is_suppressed(["h1"])
    exported = store.export_subscriber("back@example.org")
    assert exported is not None and exported["subscriber"]["bounce_count"] == 0
    assert exported["subscriber"]["status"] == "active"


def test_export_holds_the_subscriber_consents_and_deliveries(store: SqlStore) -> None:
    sid = add(store, "ann@example.org")
    ask(store, sid, NOW)
    confirm(store, sid, NOW)
    digest = Digest("REE Daily, 28 Nov 2026: Lynas", "pre", "<p>x</p>", "x", ("a1",))
    issue = store.create_issue("REE Daily", date(2026, 11, 28), NOW, digest, NOW)
    store.record_outcome(issue.id, sid, Outcome(DeliveryStatus.SENT, "250 ok", "<m@x>"), NOW)
    exported = store.export_subscriber("ann@example.org")
    assert exported is not None
    assert exported["subscriber"]["email"] == "ann@example.org"
    assert exported["subscriber"]["confirmed_at"] == (NOW + timedelta(hours=1)).isoformat()
    [consent] = exported["consents"]
    assert consent["request_ip"] == "192.0.2.7" and consent["consent_version"] == "2026-11-v1"
    assert consent["page_url"] == "https://ree-news.example.com/"
    assert consent["requested_at"] == NOW.isoformat()
    [delivery] = exported["deliveries"]
    assert delivery["issue_date"] == "2026-11-28" and delivery["status"] == "sent"
    assert delivery["subject"].startswith("REE Daily")
    assert store.export_subscriber("nobody@example.org") is None


def test_erase_leaves_only_the_keyed_hash(store: SqlStore) -> None:
    sid = add(store, "gone@example.org")
    ask(store, sid, NOW)
    digest = Digest("s", "p", "<p>x</p>", "x", ("a1",))
    issue = store.create_issue("REE Daily", date(2026, 11, 28), NOW, digest, NOW)
    bounce = Outcome(DeliveryStatus.FAILED, "550 5.1.1 <gone@example.org>: no such user")
    store.record_outcome(issue.id, sid, bounce, NOW)
    erased = store.erase_subscriber("gone@example.org", address_hash="f" * 64, now=NOW)
    assert erased == {"subscriber": 1, "consents": 1, "deliveries": 1}
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                assert "gone@example.org" not in repr(tuple(row)), table.name
    assert store.is_suppressed(["f" * 64])
    again = store.erase_subscriber("gone@example.org", address_hash="f" * 64, now=NOW)
    assert again == {"subscriber": 0, "consents": 0, "deliveries": 0}
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM suppressions")) == 1


def test_prune_deletes_only_old_never_confirmed_sign_ups(store: SqlStore) -> None:
    old_pending = add(store, "old@example.org")
    ask(store, old_pending, NOW)
    add(store, "young@example.org")  # created at NOW too, but the cut is before it
    add(store, "reader@example.org", ACTIVE)
    left = store.add_subscriber("left@example.org", status=ACTIVE, source="t", now=NOW)
    store.set_status(left.id, UNSUBSCRIBED, NOW)
    assert store.prune_pending(NOW + LATER) == 2  # old and young: both older than the cut
    assert store.get_subscriber("old@example.org") is None
    with store.engine.connect() as conn:
        rows = conn.scalar(sa.select(sa.func.count()).select_from(consent_table))
    assert rows == 0  # the only request belonged to the pruned sign-up
    assert store.get_subscriber("reader@example.org") is not None
    assert store.get_subscriber("left@example.org") is not None
    add(store, "fresh@example.org")
    assert store.prune_pending(NOW - LATER) == 0  # nothing created before the cut


def test_archive_page_lists_dates_and_subjects_newest_first(store: SqlStore) -> None:
    for day in (1, 3, 2):
        issue_date = date(2026, 11, day)
        digest = Digest(f"subject {day}", "p", "<p>x</p>", "x", (f"a{day}",))
        store.create_issue("REE Daily", issue_date, NOW, digest, NOW)
    store.create_issue("Other", date(2026, 11, 5), NOW, Digest("o", "p", "h", "t", ()), NOW)
    assert store.archive_page("REE Daily", None, 2) == [
        (date(2026, 11, 3), "subject 3"),
        (date(2026, 11, 2), "subject 2"),
    ]
    assert store.archive_page("REE Daily", date(2026, 11, 2), 10) == [
        (date(2026, 11, 1), "subject 1")
    ]
    store.ping()
