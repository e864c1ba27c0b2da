"""Group commit of the delivery ledger on a real store: an outcome counts as recorded only once
its row is committed, outcomes that arrive together share one transaction, and every outcome is
written exactly once, also around a failed write and a waiter that gave up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import pytest

from newsletter.errors import StoreError
from newsletter.ledger_writer import LedgerWriter, Rows, ledger_writer
from newsletter.models import DeliveryStatus, Outcome
from newsletter.store import SqlStore
from tests.support.clock import T0
from tests.support.lease_harness import issue_with_readers
from tests.support.pool_harness import run_bounded

SENT = Outcome(DeliveryStatus.SENT, "250 2.0.0 accepted")


class Ledger:
    """The store's own ledger writer for one issue, noting what each transaction carried."""

    def __init__(self, store: SqlStore, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
        self.writes: list[list[int]] = []
        self.fail_next = False

    def bind(self, write_rows: Callable[[Rows, datetime], None]) -> Callable[[Rows], None]:
        def write(rows: Rows) -> None:
            self.writes.append([subscriber_id for subscriber_id, _ in rows])
            if self.fail_next:
                self.fail_next = False
                raise StoreError("the store failed: disk full")
            write_rows(rows, T0)

        return write

    def stored(self) -> dict[str, int]:
        return self.store.outcome_counts(self.issue_id)


async def with_writer(
    store: SqlStore, issue_id: int, ledger: Ledger, body: Callable[[LedgerWriter], object]
) -> None:
    with store.ledger_session(issue_id) as write_rows:
        async with ledger_writer(ledger.bind(write_rows)) as writer:
            await body(writer)  # type: ignore[misc]


def test_an_outcome_is_reported_recorded_only_after_its_row_is_committed(store: SqlStore) -> None:
    issue_id, ids = issue_with_readers(store, 3)
    ledger = Ledger(store, issue_id)
    seen_on_return: list[dict[str, int]] = []

    async def body(writer: LedgerWriter) -> None:
        for subscriber_id in ids:
            await writer.record(subscriber_id, SENT)
            seen_on_return.append(ledger.stored())  # read back on another connection

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert seen_on_return == [{"sent": 1}, {"sent": 2}, {"sent": 3}]
    assert ledger.writes == [[ids[0]], [ids[1]], [ids[2]]]


def test_outcomes_that_arrive_together_share_one_transaction_and_each_is_written_once(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 12)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        await asyncio.gather(*(writer.record(i, SENT) for i in ids[:8]))
        assert ledger.stored() == {"sent": 8}
        await asyncio.gather(*(writer.record(i, SENT) for i in ids[8:]))

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids[:8], ids[8:]]
    assert ledger.stored() == {"sent": 12}


def test_a_failed_write_fails_every_outcome_in_it_and_the_next_ones_are_written(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 5)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        ledger.fail_next = True
        results = await asyncio.gather(
            *(writer.record(i, SENT) for i in ids[:3]), return_exceptions=True
        )
        assert [type(r) for r in results] == [StoreError] * 3
        assert ledger.stored() == {}  # nothing reported recorded that is not
        await asyncio.gather(*(writer.record(i, SENT) for i in ids[3:]))

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids[:3], ids[3:]]
    assert ledger.stored() == {"sent": 2}


def test_a_waiter_that_gave_up_does_not_stop_the_writer_and_its_row_is_still_written(
    store: SqlStore,
) -> None:
    """A worker cancelled (a forced stop) while its outcome waits: the row still goes in."""
    issue_id, ids = issue_with_readers(store, 3)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        gave_up = asyncio.ensure_future(writer.record(ids[0], SENT))
        waiting = asyncio.ensure_future(writer.record(ids[1], SENT))
        await asyncio.sleep(0)
        gave_up.cancel()
        await waiting
        await asyncio.wait_for(writer.record(ids[2], SENT), 5)

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids[:2], ids[2:]]
    assert ledger.stored() == {"sent": 3}


def test_the_writer_waits_for_work_and_writes_nothing_without_it(store: SqlStore) -> None:
    issue_id, ids = issue_with_readers(store, 1)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        assert ledger.writes == []
        await writer.record(ids[0], SENT)
        for _ in range(20):
            await asyncio.sleep(0)

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids]


def test_leaving_the_block_stops_the_writer_task() -> None:
    async def scenario() -> set[asyncio.Task[object]]:
        async with ledger_writer(lambda rows: None) as writer:
            await writer.record(1, SENT)
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(scenario()) == set()


@pytest.mark.parametrize("burst", [1, 50])
def test_every_outcome_reaches_the_write_with_its_own_subscriber_and_outcome(burst: int) -> None:
    written: list[tuple[int, Outcome]] = []
    outcomes = {
        i: Outcome(DeliveryStatus.DEFERRED if i % 3 else DeliveryStatus.SENT, f"reply {i}")
        for i in range(burst)
    }

    async def scenario() -> None:
        async with ledger_writer(written.extend) as writer:
            await asyncio.gather(*(writer.record(i, o) for i, o in outcomes.items()))

    run_bounded(scenario())
    assert written == list(outcomes.items())
