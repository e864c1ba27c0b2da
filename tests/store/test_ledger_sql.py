"""The ledger's hot-path write builds each row's parameters itself; SQLAlchemy is the reference.

For every kind of outcome, on both stores: the parameters are exactly those SQLAlchemy's
compiled statement makes from the column types' bind processors, and the rows it writes read
back as the SQLAlchemy path's do.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus, Outcome, storable
from newsletter.store import SqlStore, ledger_sql
from newsletter.store.engine import BUSY_TIMEOUT_MS
from newsletter.store.ledger_sql import LedgerSql, ledger_values, one_per_reader
from newsletter.store.schema import deliveries
from tests.support.clock import T0
from tests.support.config import closed_port
from tests.support.lease_harness import issue_with_readers
from tests.support.ledger_write import write_group, write_groups

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
    write_groups(LedgerSql(store.engine, issue_id), list(zip(hot, OUTCOMES, strict=True)), now=T0)
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
    group = [(grouped, o) for o in outcomes]
    rows = [*group[:1], (other, OUTCOMES[0]), *group[1:]]
    write_groups(LedgerSql(store.engine, issue_id), rows, now=T0)
    for outcome in outcomes:
        store.record_outcomes(issue_id, [(single, outcome)], T0)
    found = {
        r.subscriber_id: (r.status, r.detail, r.attempts) for r in ledger_rows(store, issue_id)
    }
    assert found[grouped] == found[single]
    assert found[other] == (DeliveryStatus.SENT.value, OUTCOMES[0].detail, 1)


def test_the_ledgers_connection_goes_back_to_the_pool_as_it_came(store: SqlStore) -> None:
    """SQLite's session holds a pooled connection and gives it back with SQLite's own wait;
    PostgreSQL's opens one of its own (psycopg's asyncio connection) and closes it at the end:
    the pool's connections keep their transactions, and none is left open on the server."""
    issue_id, ids = issue_with_readers(store, 1)
    pool = store.engine.pool
    held = pool.checkedout()  # type: ignore[attr-defined]
    session = LedgerSql(store.engine, issue_id)
    driver = session.raw.driver_connection if session.sqlite else None
    write_groups(session, [(ids[0], OUTCOMES[0])], now=T0)
    assert pool.checkedout() == held  # type: ignore[attr-defined]
    assert store.outcome_counts(issue_id) == {"sent": 1}
    if session.sqlite:
        raw = store.engine.raw_connection()
        try:
            assert raw.driver_connection is driver  # the pool's one idle connection
            cursor = raw.cursor()
            assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
            cursor.close()
        finally:
            raw.close()
    else:
        assert session.server is not None and session.server.closed


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
    write_groups(LedgerSql(store.engine, issue_id), list(zip(ids, outcomes, strict=True)), now=T0)
    found = {r.subscriber_id: r.detail for r in ledger_rows(store, issue_id)}
    assert [found[i] for i in ids] == [storable(text) for text in HOSTILE]
    assert storable("a\x00b") == "a\ufffdb" and storable("\ud800") == "?"
    assert [storable(t) for t in HOSTILE[:9]] == [*HOSTILE[:8], "a\ufffdb"]


def test_a_group_with_an_unknown_reader_writes_none_of_it(store: SqlStore) -> None:
    """One statement: all of the group or none (executemany under autocommit would keep the
    rows before the bad one). The next group goes on the same session; SQLite's connection,
    which the fault may have left in any state, is thrown away at the end, not pooled."""
    issue_id, ids = issue_with_readers(store, 2)
    session = LedgerSql(store.engine, issue_id)
    bad = [(ids[0], OUTCOMES[0]), (10_000, OUTCOMES[0]), (ids[1], OUTCOMES[0])]
    failed: list[StoreError] = []

    async def run() -> None:
        try:
            with pytest.raises(StoreError, match="recording outcomes") as caught:
                await write_group(session, bad, T0)
            failed.append(caught.value)
            assert ledger_rows(store, issue_id) == []
            await write_group(session, [(ids[1], OUTCOMES[0])], T0)
        finally:
            await session.aclose()

    asyncio.run(run())
    assert len(failed) == 1
    assert [r.subscriber_id for r in ledger_rows(store, issue_id)] == [ids[1]]
    assert session.broken == session.sqlite


def test_the_end_of_a_session_waits_for_a_statement_under_way(store: SqlStore) -> None:
    """A forced stop cancels the waiter of a group whose statement the server is running: the
    statement is not cut off, and the session's end waits for it before it closes the
    connection. Here another transaction holds the reader's row, so the statement waits."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a statement under way while the loop runs is PostgreSQL's")
    issue_id, ids = issue_with_readers(store, 1)
    store.record_outcomes(issue_id, [(ids[0], OUTCOMES[1])], T0)  # deferred: may be updated
    session = LedgerSql(store.engine, issue_id)
    blocker = store.engine.raw_connection()
    cursor = blocker.cursor()
    cursor.execute("SELECT 1 FROM deliveries WHERE subscriber_id = %s FOR UPDATE", (ids[0],))
    released: list[float] = []

    def release() -> None:
        blocker.commit()
        released.append(time.monotonic())

    async def run() -> float:
        waiter = asyncio.ensure_future(write_group(session, [(ids[0], OUTCOMES[0])], T0))
        await asyncio.sleep(0.2)
        assert not waiter.done()  # the row is held
        waiter.cancel()  # the forced stop
        asyncio.get_running_loop().call_later(0.3, release)
        await session.aclose()
        return time.monotonic()

    try:
        ended = asyncio.run(run())
    finally:
        cursor.close()
        blocker.close()
    assert released and ended >= released[0]
    assert store.outcome_counts(issue_id) == {"sent": 1}
    assert session.server.closed


def hold_row(store: SqlStore, subscriber_id: int) -> Any:
    """Another transaction holding a reader's ledger row (FOR UPDATE) until its commit."""
    holder = store.engine.raw_connection()
    cursor = holder.cursor()
    cursor.execute("SELECT 1 FROM deliveries WHERE subscriber_id = %s FOR UPDATE", (subscriber_id,))
    cursor.close()
    return holder


async def stopped_mid_statement(session: LedgerSql, subscriber_id: int) -> asyncio.Task[None]:
    """A group whose row another transaction holds, its waiter cancelled (a forced stop), and
    the session's end under way (returned): it waits for the statement."""
    await session.open()
    waiter = asyncio.ensure_future(write_group(session, [(subscriber_id, OUTCOMES[0])], T0))
    await asyncio.sleep(0.1)
    waiter.cancel()
    ending = asyncio.ensure_future(session.aclose())
    await asyncio.sleep(0.1)
    assert not ending.done()
    return ending


def test_a_cancelled_end_still_lets_the_statement_finish_before_it_closes(
    store: SqlStore,
) -> None:
    """A forced stop twice: the waiter is cancelled, then the session's end too. The
    statement is still not cut off: the end waits for it, closes, then raises the
    cancellation; the group is stored."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a statement under way while the loop runs is PostgreSQL's")
    issue_id, ids = issue_with_readers(store, 1)
    store.record_outcomes(issue_id, [(ids[0], OUTCOMES[1])], T0)
    session = LedgerSql(store.engine, issue_id)
    holder = hold_row(store, ids[0])
    released: list[float] = []

    def release() -> None:
        holder.commit()
        released.append(time.monotonic())

    async def run() -> tuple[bool, float]:
        ending = await stopped_mid_statement(session, ids[0])
        ending.cancel()  # the second forced stop
        asyncio.get_running_loop().call_later(0.3, release)
        await asyncio.wait([ending])
        return ending.cancelled(), time.monotonic()

    try:
        cancelled, ended = asyncio.run(run())
    finally:
        holder.close()
    assert cancelled
    assert released and ended >= released[0]
    assert store.outcome_counts(issue_id) == {"sent": 1}
    assert session.server.closed


def test_a_statement_that_never_ends_is_cancelled_a_while_after_a_forced_stop(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung server cannot hold a forced stop for ever: LINGER seconds after the end was
    cancelled, the statement is cancelled on the server (nothing of the group is written)
    and the connection closed."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a statement under way while the loop runs is PostgreSQL's")
    monkeypatch.setattr(ledger_sql, "LINGER", 0.3)
    issue_id, ids = issue_with_readers(store, 1)
    store.record_outcomes(issue_id, [(ids[0], OUTCOMES[1])], T0)
    session = LedgerSql(store.engine, issue_id)
    holder = hold_row(store, ids[0])  # held past the linger
    backstop = threading.Timer(5, holder.commit)  # were it never cancelled: no hung test

    async def run() -> float:
        ending = await stopped_mid_statement(session, ids[0])
        started = time.monotonic()
        ending.cancel()
        await asyncio.wait([ending])
        assert ending.cancelled()
        return time.monotonic() - started

    backstop.start()
    try:
        took = asyncio.run(run())
    finally:
        backstop.cancel()
        backstop.join()
        holder.commit()
        holder.close()
    assert 0.25 <= took < 3
    assert session.statement is not None and session.statement.done()
    assert session.server.closed
    assert store.outcome_counts(issue_id) == {"deferred": 1}  # the group was not written


def test_a_server_that_refuses_the_ledgers_connection_fails_the_session_at_its_start() -> None:
    """Before the first message, not at the first commit (by then every connection's first
    message would be out and unrecorded)."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    session = LedgerSql(sa.create_engine(url), 1)
    with pytest.raises(StoreError, match="the store failed"):
        asyncio.run(session.open())
    assert session.server is None
