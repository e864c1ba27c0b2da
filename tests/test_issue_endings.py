"""An ended issue keeps saying who never got it (issue 9: status shows "how many readers never
got it").

A reader never tried has no ledger row, and counting such readers means an anti-join over the
whole list, so `status` does it only for unfinished issues. An issue ended by the operator
(`close`) or abandoned unreached therefore writes an `expired` row for each of them as it ends:
its count survives, from the index, whoever joins or leaves afterwards. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from newsletter import lifecycle
from newsletter.config import Settings, load_settings
from newsletter.models import (
    DeliveryStatus,
    Digest,
    Frequency,
    Issue,
    IssueStatus,
    Outcome,
    Subscriber,
    SubscriberStatus,
)
from newsletter.store import SqlStore
from newsletter.timing import issue_cutoff
from tests.support.config import SAMPLE, closed_port, make_config

DAY = date(2026, 11, 27)
DIGEST = Digest("subject", "preheader", "<p>html</p>", "text", ())
ACTIVE = SubscriberStatus.ACTIVE


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(make_config(tmp_path, [("Sample", str(SAMPLE))], closed_port()))


def issue_with_readers(
    tmp_path: Path, store: SqlStore, count: int
) -> tuple[Settings, Issue, list[Subscriber]]:
    """The issue of DAY, made at its cutoff, and `count` readers who confirmed the day before."""
    settings = settings_for(tmp_path)
    made = issue_cutoff(settings, DAY)
    issue = store.create_issue(settings.name, DAY, made, DIGEST, made)
    readers = [
        store.add_subscriber(
            f"r{n}@example.org", status=ACTIVE, source="t", now=made - timedelta(days=1)
        )
        for n in range(count)
    ]
    return settings, issue, readers


def test_a_closed_issue_counts_its_never_tried_readers_for_good(
    tmp_path: Path, store: SqlStore
) -> None:
    settings, issue, readers = issue_with_readers(tmp_path, store, 5)
    made = issue.created_at
    sent, deferred, *untried = readers
    store.record_outcome(issue.id, sent.id, Outcome(DeliveryStatus.SENT, "250 ok"), made)
    later = made + timedelta(hours=30)
    retry = Outcome(DeliveryStatus.DEFERRED, "451 4.3.0 later", next_attempt=later)
    store.record_outcome(issue.id, deferred.id, retry, made)
    assert lifecycle.standing(store, issue).unreached == 4

    said = lifecycle.close(settings, store, DAY, later)

    assert said == f"the issue of {DAY} is now closed; 3 reader(s) never tried will not get it"
    ended = store.get_issue(settings.name, DAY)
    assert ended is not None and ended.status is IssueStatus.CLOSED
    assert store.outcome_counts(ended.id) == {"sent": 1, "expired": 4}
    assert lifecycle.standing(store, ended).unreached == 4
    # A newcomer (never this issue's reader) and a leaver change nothing about the issue.
    store.add_subscriber("new@example.org", status=ACTIVE, source="t", now=later)
    store.set_status(untried[0].id, SubscriberStatus.UNSUBSCRIBED, later)
    assert lifecycle.standing(store, ended).unreached == 4
    # Closing again writes nothing more.
    assert "already closed" in lifecycle.close(settings, store, DAY, later)
    assert store.outcome_counts(ended.id) == {"sent": 1, "expired": 4}


def test_an_issue_abandoned_unreached_counts_every_reader_it_never_reached(
    tmp_path: Path, store: SqlStore
) -> None:
    settings = settings_for(tmp_path)
    made = issue_cutoff(settings, DAY)
    issue = store.create_issue(settings.name, DAY, made, DIGEST, made)
    for n in range(3):
        store.add_subscriber(f"r{n}@example.org", status=ACTIVE, source="t", now=made)
    next_day = made + timedelta(days=1)

    assert lifecycle.abandon_unreached(
        settings, store, DAY + timedelta(days=1), next_day, Frequency.DAILY
    ) == [DAY]

    ended = store.get_issue(settings.name, DAY)
    assert ended is not None and ended.status is IssueStatus.ABANDONED
    assert store.outcome_counts(issue.id) == {"expired": 3}
    assert lifecycle.standing(store, ended).unreached == 3


def test_whether_anyone_is_left_untried_agrees_with_the_count_at_every_step(
    tmp_path: Path, store: SqlStore
) -> None:
    """`settle` asks `any_untried` (found at the first such reader) where `status` counts."""
    settings, issue, readers = issue_with_readers(tmp_path, store, 3)
    made = issue.created_at
    store.add_subscriber("late@example.org", status=ACTIVE, source="t", now=made + timedelta(1))

    def both() -> tuple[bool, int]:
        return store.any_untried(issue.id), store.untried_count(issue.id)

    assert both() == (True, 3)  # the late sign-up is the next issue's reader
    later = made + timedelta(hours=1)
    retry = Outcome(DeliveryStatus.DEFERRED, "451 later", next_attempt=later)
    store.record_outcome(issue.id, readers[0].id, retry, made)
    assert both() == (True, 2)  # deferred has been tried
    store.set_status(readers[1].id, SubscriberStatus.UNSUBSCRIBED, made)
    assert both() == (True, 1)
    assert lifecycle.settle(settings, store, issue, made) is IssueStatus.SENDING
    store.record_outcome(issue.id, readers[2].id, Outcome(DeliveryStatus.SENT, "250 ok"), made)
    assert both() == (False, 0)
    assert lifecycle.settle(settings, store, issue, made) is IssueStatus.SENDING  # deferred
    store.record_outcome(issue.id, readers[0].id, Outcome(DeliveryStatus.SENT, "250 ok"), later)
    assert lifecycle.settle(settings, store, issue, later) is IssueStatus.SENT
