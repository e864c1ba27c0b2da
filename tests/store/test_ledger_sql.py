"""The ledger's hot-path write builds each row's parameters itself; SQLAlchemy is the reference.

For every kind of outcome, on both stores: the parameters are exactly those SQLAlchemy's
compiled statement makes from the column types' bind processors, and the rows it writes read
back as the SQLAlchemy path's do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus, Outcome, storable
from newsletter.store import SqlStore
from newsletter.store.ledger_sql import LedgerSql, ledger_values, one_per_reader
from newsletter.store.schema import deliveries
from tests.support.clock import T0
from tests.support.lease_harness import issue_with_readers

OUTCOMES = [
    Outcome(DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 4Xyz", "<a@ree-news.example.com>", 1),
    Outcome(DeliveryStatus.DEFERRED, "451 4.7.1 try later", "<b@x>", 3, T0 + timedelta(hours=1)),
    Outcome(DeliveryStatus.FAILED, "550 5.1.1 no such user", "", 1, code=550),
    Outcome(DeliveryStatus.SKIPPED, "no longer active at send time", attempts=0),
]


def reference(session: LedgerSql, row: dict[str, Any]) -> Any:
    """What SQLAlchemy's own machinery makes of the row: bind processors, then the statement's
    construct_params, in the driver's order."""
    processed = {}
    for column in deliveries.columns:
        processor = column.type.bind_processor(session.dialect)
        value = row[column.name]
        processed[column.name] = processor(value) if processor else value
    params = session.compiled.construct_params(processed)
    if session.compiled.positiontup is not None:
        return [params[name] for name in session.compiled.positiontup]
    return params


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: o.status.value)
def test_a_rows_parameters_are_sqlalchemys(store: SqlStore, outcome: Outcome) -> None:
    """SQLite binds row by row; PostgreSQL binds a group as one array a column."""
    issue_id, ids = issue_with_readers(store, 2)
    session = LedgerSql(store.engine, issue_id)
    try:
        rows = [ledger_values(issue_id, i, outcome, T0) for i in ids]
        expected = [reference(session, row) for row in rows]
        if session.sqlite:
            assert [session._params(row) for row in rows] == expected
        else:
            columns = {c.name for c in deliveries.columns}
            arrays = {
                name: [e[name] for e in expected] if name in columns else value
                for name, value in expected[0].items()
            }
            assert session._arrays(rows) == arrays
    finally:
        session.close()


def test_rows_written_on_the_hot_path_read_back_as_the_sqlalchemy_paths(store: SqlStore) -> None:
    issue_id, ids = issue_with_readers(store, 2 * len(OUTCOMES))
    hot, plain = ids[: len(OUTCOMES)], ids[len(OUTCOMES) :]
    session = LedgerSql(store.engine, issue_id)
    try:
        session(list(zip(hot, OUTCOMES, strict=True)), T0)
    finally:
        session.close()
    store.record_outcomes(issue_id, list(zip(plain, OUTCOMES, strict=True)), T0)
    counts = store.outcome_counts(issue_id)
    assert counts == {o.status.value: 2 for o in OUTCOMES}
    by_id = {
        r.subscriber_id: (
            r.status,
            r.detail,
            r.message_id,
            r.attempts,
            r.next_attempt,
            r.updated_at,
        )
        for r in ledger_rows(store, issue_id)
    }
    assert [by_id[i] for i in hot] == [by_id[i] for i in plain]


def ledger_rows(store: SqlStore, issue_id: int) -> list[Any]:
    query = sa.select(deliveries).where(deliveries.c.issue_id == issue_id)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


# A reader's outcomes within one group, as a retry or a takeover may bring them together.
SEQUENCES = [
    [DeliveryStatus.DEFERRED, DeliveryStatus.SENT],
    [DeliveryStatus.SENT, DeliveryStatus.FAILED],
    [DeliveryStatus.DEFERRED, DeliveryStatus.FAILED],
    [DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.SENT, DeliveryStatus.SKIPPED],
    [DeliveryStatus.SKIPPED, DeliveryStatus.DEFERRED],
    [DeliveryStatus.SENT, DeliveryStatus.SENT],  # the first one's detail stays
]


@pytest.mark.parametrize("before", [None, DeliveryStatus.DEFERRED, DeliveryStatus.SENT])
@pytest.mark.parametrize("sequence", SEQUENCES, ids=lambda q: "-".join(s.value for s in q))
def test_one_readers_outcomes_in_one_group_land_as_one_after_another_would(
    store: SqlStore, sequence: list[DeliveryStatus], before: DeliveryStatus | None
) -> None:
    """The reference: the same outcomes recorded one commit at a time. A group written as one
    statement (PostgreSQL) may touch a row only once, so the group merges them first."""
    issue_id, (grouped, single, other) = issue_with_readers(store, 3)
    outcomes = [Outcome(s, f"{n} {s.value}", f"<{n}@x>", n + 1) for n, s in enumerate(sequence)]
    if before is not None:
        store.record_outcomes(issue_id, [(grouped, Outcome(before, "earlier")),
                                         (single, Outcome(before, "earlier"))], T0)  # fmt: skip
    session = LedgerSql(store.engine, issue_id)
    try:
        group = [(grouped, o) for o in outcomes]
        session([*group[:1], (other, OUTCOMES[0]), *group[1:]], T0)
    finally:
        session.close()
    for outcome in outcomes:
        store.record_outcomes(issue_id, [(single, outcome)], T0)
    found = {
        r.subscriber_id: (r.status, r.detail, r.attempts) for r in ledger_rows(store, issue_id)
    }
    assert found[grouped] == found[single]
    assert found[other] == (DeliveryStatus.SENT.value, OUTCOMES[0].detail, 1)


def test_the_ledgers_connection_goes_back_to_the_pool_as_it_came(store: SqlStore) -> None:
    """On PostgreSQL the ledger's connection commits each statement by itself; whoever takes
    it from the pool next gets transactions again (a write of theirs must be able to roll back)."""
    issue_id, ids = issue_with_readers(store, 1)
    session = LedgerSql(store.engine, issue_id)
    driver = session.raw.driver_connection
    session([(ids[0], OUTCOMES[0])], T0)
    session.close()
    raw = store.engine.raw_connection()
    try:
        assert raw.driver_connection is driver  # the pool's one idle connection
        if not session.sqlite:
            assert driver.autocommit is False  # type: ignore[union-attr]
    finally:
        raw.close()


@given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from(list(DeliveryStatus))), max_size=12))
def test_merging_a_group_is_applying_it_in_order(group: list[tuple[int, DeliveryStatus]]) -> None:
    """The model: each outcome in turn, unless the reader's row already says SENT."""
    rows = [(reader, Outcome(status, f"#{n}")) for n, (reader, status) in enumerate(group)]
    model: dict[int, Outcome] = {}
    for reader, outcome in rows:
        if reader not in model or model[reader].status is not DeliveryStatus.SENT:
            model[reader] = outcome
    merged = one_per_reader(rows)
    assert dict(merged) == model
    assert [reader for reader, _ in merged] == list(dict.fromkeys(r for r, _ in rows))


HOSTILE = [
    '{a,"b"}\\',
    "NULL",
    "null",
    " x ",
    ",",
    "\u00a0\u2003",
    "",
    "550 {}",
    "a\x00b",
    "bad \udcff byte",
    "\ud800",
    "é" * 300,
]


def test_any_reply_text_is_kept_and_never_stops_the_write(store: SqlStore) -> None:
    """A relay's reply is free text; a NUL or an undecodable byte (a lone surrogate here) is
    what PostgreSQL refuses, and one of them failed a whole group's commit."""
    issue_id, ids = issue_with_readers(store, len(HOSTILE))
    outcomes = [
        Outcome(DeliveryStatus.DEFERRED, text, f"<{n}@x>", 1) for n, text in enumerate(HOSTILE)
    ]
    session = LedgerSql(store.engine, issue_id)
    try:
        session(list(zip(ids, outcomes, strict=True)), T0)
    finally:
        session.close()
    found = {r.subscriber_id: r.detail for r in ledger_rows(store, issue_id)}
    assert [found[i] for i in ids] == [storable(text) for text in HOSTILE]
    assert storable("a\x00b") == "a\ufffdb" and storable("\ud800") == "?"
    assert [storable(t) for t in HOSTILE[:9]] == [*HOSTILE[:8], "a\ufffdb"]


def test_a_group_with_an_unknown_reader_writes_none_of_it(store: SqlStore) -> None:
    """One statement: all of the group or none (executemany under autocommit would keep the
    rows before the bad one). The connection it failed on is thrown away."""
    issue_id, ids = issue_with_readers(store, 2)
    session = LedgerSql(store.engine, issue_id)
    with pytest.raises(StoreError, match="recording outcomes"):
        session([(ids[0], OUTCOMES[0]), (10_000, OUTCOMES[0]), (ids[1], OUTCOMES[0])], T0)
    assert session.broken
    session.close()
    assert ledger_rows(store, issue_id) == []


def test_a_close_during_a_write_gives_the_connection_back_when_the_write_ends(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 1)
    session = LedgerSql(store.engine, issue_id)
    driver = session.raw.driver_connection
    with session.idle:  # a write under way
        session.close()
        assert not session.given_back
    session([(ids[0], OUTCOMES[0])], T0)  # the write ends: the connection goes back
    assert session.given_back
    raw = store.engine.raw_connection()
    try:
        assert raw.driver_connection is driver
        if not session.sqlite:
            assert driver.autocommit is False
    finally:
        raw.close()
