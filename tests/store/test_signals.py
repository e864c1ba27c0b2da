"""The store's side of reports that come back: one transaction per request, each report once,
no address kept, erasure honoured, and the counts the dashboard and metrics read. SQLite and
PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta

import pytest

from newsletter.bounces import Verp
from newsletter.models import DeliveryStatus, Digest, FeedReport, Outcome, SubscriberStatus
from newsletter.signals import Signal, SignalDesk, SignalKind
from newsletter.store import SqlStore
from tests.support.clock import FakeClock

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
MESSAGE_ID = "<20261127.aa.1.000000000001@ree-news.example.com>"
MESSAGE_ID_2 = "<20261128.bb.1.000000000001@ree-news.example.com>"


def setting(store: SqlStore, threshold: int = 1) -> tuple[SignalDesk, int, int]:
    """A desk, and one active reader who was sent one issue (its Message-ID in the ledger)."""
    reader = store.add_subscriber(
        "reader@example.org", status=SubscriberStatus.ACTIVE, source="t", now=NOW
    )
    digest = Digest("REE Daily", "pre", "<p>x</p>", "x", ("a1",))
    issue = store.create_issue("REE Daily", date(2026, 11, 27), NOW, digest, NOW)
    store.record_outcome(issue.id, reader.id, Outcome(DeliveryStatus.SENT, "ok", MESSAGE_ID), NOW)
    verp = Verp(["k"], "bounce.example.com")
    return (
        SignalDesk(store, verp, threshold, FakeClock(NOW + timedelta(hours=1))),
        reader.id,
        issue.id,
    )


def signal(key: str, kind: SignalKind, **fields: object) -> Signal:
    return Signal("ses", key, kind, **fields)  # type: ignore[arg-type]


def test_a_request_and_each_report_count_once(store: SqlStore) -> None:
    desk, reader, issue = setting(store)
    complaint = signal("m1:0", SignalKind.COMPLAINT, message_ids=(MESSAGE_ID,))
    taken = desk.take("ses", "m1", [complaint])
    assert not taken.duplicate and taken.outcomes == {"unsubscribed": 1}
    assert desk.take("ses", "m1", [complaint]).duplicate
    again = desk.take("ses", "m2", [complaint])  # another request repeating the same event
    assert again.outcomes == {"duplicate": 1}
    assert store.signal_tallies([issue]) == {issue: {"complaint": 1}}
    found = store.get_subscriber_by_id(reader)
    assert found is not None and found.status is SubscriberStatus.UNSUBSCRIBED


def second_issue(store: SqlStore, reader: int, message_id: str = MESSAGE_ID_2) -> int:
    """The next day's issue, sent to `reader` too."""
    digest = Digest("REE Daily", "pre", "<p>y</p>", "y", ("a2",))
    later = NOW + timedelta(minutes=5)
    issue = store.create_issue("REE Daily", date(2026, 11, 28), later, digest, later)
    store.record_outcome(issue.id, reader, Outcome(DeliveryStatus.SENT, "ok", message_id), later)
    return issue.id


def test_hard_bounces_follow_the_threshold_and_soft_ones_change_nothing(store: SqlStore) -> None:
    desk, reader, issue = setting(store, threshold=2)
    verp = desk.verp.address(reader)
    soft = signal("s", SignalKind.SOFT_BOUNCE, message_ids=(MESSAGE_ID,))
    assert desk.take("ses", None, [soft]).outcomes == {"soft": 1}
    first = signal("h1", SignalKind.HARD_BOUNCE, message_ids=(MESSAGE_ID,))
    assert desk.take("ses", None, [first]).outcomes == {"counted": 1}
    later = second_issue(store, reader)
    second = signal("h2", SignalKind.HARD_BOUNCE, verp=(verp,))  # VERP: the last issue sent
    assert desk.take("ses", None, [second]).outcomes == {"bounced": 1}
    found = store.get_subscriber_by_id(reader)
    assert found is not None and found.status is SubscriberStatus.BOUNCED
    tallies = store.signal_tallies([issue, later])
    assert tallies == {issue: {"soft_bounce": 1, "hard_bounce": 1}, later: {"hard_bounce": 1}}


def test_tallies_count_readers_not_reports(store: SqlStore) -> None:
    """One reader's complaint by two routes, and copies of a feedback report about the one
    digest its sender really got (each with a new report id, so each a new event), count once:
    the issue's complaint rate is of readers. Another reader's complaint counts, and an
    erased reader keeps their one complaint."""
    desk, _, issue = setting(store)
    ours = (MESSAGE_ID,)
    assert desk.take(
        "ses", "m1", [signal("m1:0", SignalKind.COMPLAINT, message_ids=ours)]
    ).outcomes == {"unsubscribed": 1}
    copies = [Signal("arf", f"<r{n}@forged.example>", SignalKind.COMPLAINT, ours) for n in range(5)]
    assert desk.take("arf", None, copies).outcomes == {"repeat": 5}
    assert store.signal_tallies([issue]) == {issue: {"complaint": 1}}
    other = store.add_subscriber(
        "other@example.org", status=SubscriberStatus.ACTIVE, source="t", now=NOW
    )
    theirs = "<20261127.aa.1.000000000002@ree-news.example.com>"
    store.record_outcome(issue, other.id, Outcome(DeliveryStatus.SENT, "ok", theirs), NOW)
    desk.take("ses", None, [signal("o", SignalKind.COMPLAINT, message_ids=(theirs,))])
    assert store.signal_tallies([issue]) == {issue: {"complaint": 2}}
    store.erase_subscriber("reader@example.org", address_hash="h" * 64, now=NOW)
    assert store.signal_tallies([issue]) == {issue: {"complaint": 2}}
    assert len(store.event_times(NOW - timedelta(days=1))["complaints"]) == 2
    totals = store.signal_totals()
    assert (
        totals[("arf", "complaint", "repeat")] == 5
        and totals[("ses", "complaint", "unsubscribed")] == 2
    )


def test_two_reports_of_one_bounce_count_once_towards_the_threshold(store: SqlStore) -> None:
    """A DSN and a webhook about the same failed message are one bounce, not two."""
    desk, reader, issue = setting(store, threshold=2)
    verp = desk.verp.address(reader)
    dsn = Signal("dsn", "dsn:abc:0", SignalKind.HARD_BOUNCE, (MESSAGE_ID,))
    hook = Signal("ses", "m9:0", SignalKind.HARD_BOUNCE, verp=(verp,))
    assert desk.take("dsn", None, [dsn]).outcomes == {"counted": 1}
    assert desk.take("ses", None, [hook]).outcomes == {"repeat": 1}
    found = store.get_subscriber_by_id(reader)
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    assert store.signal_tallies([issue]) == {issue: {"hard_bounce": 1}}
    assert len(store.event_times(NOW - timedelta(days=1))["bounces"]) == 1
    second_issue(store, reader)  # the next issue bounces too: that is the second bounce
    again = Signal("ses", "m10:0", SignalKind.HARD_BOUNCE, (MESSAGE_ID_2,))
    assert desk.take("ses", None, [again]).outcomes == {"bounced": 1}


def test_a_reader_refused_during_the_send_is_counted_by_the_ledger(store: SqlStore) -> None:
    """`failed_details` gives the rates the relay's refusals; a later hard-bounce report about
    the same reader and issue is not counted a second time."""
    desk, _, issue = setting(store)
    gone = store.add_subscriber(
        "gone@example.org", status=SubscriberStatus.ACTIVE, source="t", now=NOW
    )
    refused = "<20261127.aa.1.000000000003@ree-news.example.com>"
    reply = "DATA: 550 5.1.1 User unknown"
    store.record_outcome(issue, gone.id, Outcome(DeliveryStatus.FAILED, reply, refused), NOW)
    late = Signal("dsn", "dsn:def:0", SignalKind.HARD_BOUNCE, (refused,))
    assert desk.take("dsn", None, [late]).outcomes == {"bounced": 1}
    assert store.failed_details([issue]) == {issue: [reply]}
    assert store.signal_tallies([issue]) == {issue: {}}


def test_an_address_alone_matches_nobody(store: SqlStore) -> None:
    desk, reader, _ = setting(store)
    lone = signal("x", SignalKind.COMPLAINT, recipient="reader@example.org")
    forged = signal("y", SignalKind.COMPLAINT, verp=("bounce+1-0000000000@bounce.example.com",))
    assert desk.take("ses", None, [lone, forged]).outcomes == {"unmatched": 2}
    found = store.get_subscriber_by_id(reader)
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    assert [row["outcome"] for row in store.recent_signals()] == ["unmatched", "unmatched"]


def test_a_failing_report_rolls_the_whole_request_back(store: SqlStore) -> None:
    desk, _, _ = setting(store)
    good = signal("ok", SignalKind.COMPLAINT, message_ids=(MESSAGE_ID,))
    with pytest.raises(ValueError):
        signal("", SignalKind.COMPLAINT)
    too_long = signal("k" * 200, SignalKind.COMPLAINT)
    object.__setattr__(too_long, "event_key", "k" * 5000)  # slipped past the check somehow
    with contextlib.suppress(Exception):
        desk.take("ses", "req", [good, too_long])
    if store.engine.dialect.name == "postgresql":  # varchar(200) refuses: nothing was kept
        assert store.recent_signals() == []
        assert not desk.take("ses", "req", [good]).duplicate


def test_erasing_a_reader_keeps_the_count_but_not_the_person(store: SqlStore) -> None:
    desk, reader, issue = setting(store)
    desk.take("ses", None, [signal("c", SignalKind.COMPLAINT, message_ids=(MESSAGE_ID,))])
    store.erase_subscriber("reader@example.org", address_hash="h" * 64, now=NOW)
    [row] = store.recent_signals()
    assert row["subscriber_id"] is None and row["issue_id"] == issue
    assert store.signal_tallies([issue]) == {issue: {"complaint": 1}}
    del reader


def test_event_times_and_feed_health(store: SqlStore) -> None:
    desk, _, _ = setting(store)
    desk.take("ses", None, [signal("c", SignalKind.COMPLAINT, message_ids=(MESSAGE_ID,))])
    times = store.event_times(NOW - timedelta(days=1))
    assert len(times["sign-ups"]) == 1 and len(times["complaints"]) == 1
    assert times["unsubscribes"] and not times["bounces"]
    url = "https://ree-news.example.com/feed/"
    store.record_feed_reports([FeedReport("News", url, True, 5)], NOW - timedelta(days=2))
    store.record_feed_reports([FeedReport("News", url, False, error="HTTP 500")], NOW)
    [health] = store.feed_health(NOW - timedelta(days=1))
    assert health["failures"] == 1 and health["last"]["error"] == "HTTP 500"
    assert health["last_ok"] == NOW - timedelta(days=2)
    store.record_feed_reports([], NOW + timedelta(days=91))  # old fetches are pruned
    assert store.feed_health(NOW) == []


def test_webhook_keys_are_pruned_after_a_week(store: SqlStore) -> None:
    desk, _, _ = setting(store)
    desk.take("mailgun", "token:abc", [])
    assert store.prune_webhook_keys(NOW + timedelta(days=6)) == 0
    assert desk.take("mailgun", "token:abc", []).duplicate
    assert store.prune_webhook_keys(NOW + timedelta(days=8)) == 1


HOSTILE = ("\x00", "\udcff", "\ud800x", "a\x00\udcffb")


@pytest.mark.parametrize("text", HOSTILE)
def test_a_report_spelling_a_nul_or_a_lone_surrogate_is_kept_with_the_rest_of_its_request(
    store: SqlStore, text: str
) -> None:
    """JSON may spell "\\u0000" and "\\udcff", and a bounce header's undecodable bytes arrive
    as lone surrogates. PostgreSQL refuses a NUL in text and neither store encodes a lone
    surrogate: the request's transaction failed, and the good report beside it was lost."""
    desk, reader, issue = setting(store)
    odd = signal(
        f"key{text}", SignalKind.SOFT_BOUNCE, message_ids=(MESSAGE_ID, f"<x{text}@y>"),
        verp=(f"b{text}@bounce.example.com",), recipient=f"r{text}@example.org",
        detail=f"452 mailbox{text} full",
    )  # fmt: skip
    complaint = signal("fine", SignalKind.COMPLAINT, message_ids=(MESSAGE_ID,))
    taken = desk.take("ses", f"request{text}", [odd, complaint])
    assert not taken.duplicate and taken.outcomes == {"soft": 1, "unsubscribed": 1}
    assert store.signal_tallies([issue]) == {issue: {"soft_bounce": 1, "complaint": 1}}
    found = store.get_subscriber_by_id(reader)
    assert found is not None and found.status is SubscriberStatus.UNSUBSCRIBED
    details = [row["detail"] for row in store.recent_signals(5)]
    assert "452 mailbox" in " ".join(details) and "\x00" not in " ".join(details)
    # The same request, and the same report, replayed: each is still known as seen.
    assert desk.take("ses", f"request{text}", [odd]).duplicate
    assert desk.take("ses", "another", [odd]).outcomes == {"duplicate": 1}
