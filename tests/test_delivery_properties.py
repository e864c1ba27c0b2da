"""Properties of the delivery machinery over generated inputs (Hypothesis, derandomized).

- The rate limiter: for any rate and any number of callers arriving together, the first goes at
  once and caller k gets the slot k intervals later; rate 0 never waits.
- The ledger writer: for any pattern of outcomes arriving in bursts, with any write failing,
  every outcome reaches exactly one write, in arrival order, and its waiter learns that write's
  fate (returns when it committed, raises when it did not).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter import pool
from newsletter.errors import StoreError
from newsletter.ledger_writer import LedgerWriter, Rows, Write, ledger_writer
from newsletter.models import DeliveryStatus, Outcome
from newsletter.pool import RateLimiter
from tests.support.pool_harness import LoopSleeps, run_bounded

PROFILE = settings(derandomize=True, max_examples=40, deadline=None)


@PROFILE
@given(
    rate=st.one_of(st.just(0.0), st.floats(min_value=0.05, max_value=1000.0)),
    callers=st.integers(min_value=1, max_value=6),
)
def test_callers_arriving_together_get_slots_one_interval_apart(rate: float, callers: int) -> None:
    limiter = RateLimiter(rate)
    spy = LoopSleeps()

    async def together() -> float:
        start = asyncio.get_running_loop().time()
        waiting = [asyncio.ensure_future(limiter.wait()) for _ in range(callers)]
        await asyncio.sleep(0)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        return start

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool, "asyncio", spy)
        start = run_bounded(together())
    if rate == 0:
        assert spy.sleeps == []
        return
    interval = 1 / rate
    slots = [at + delay - start for at, delay in spy.sleeps]
    assert len(slots) == callers - 1
    tolerance = 0.05 + 1e-9 * interval
    for k, slot in enumerate(slots, start=1):
        assert abs(slot - k * interval) <= tolerance


@pytest.mark.parametrize("awaited", [False, True], ids=["done on the call", "awaited"])
@PROFILE
@given(
    bursts=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=6),
    failing=st.sets(st.integers(min_value=0, max_value=5), max_size=3),
)
def test_every_outcome_reaches_exactly_one_write_and_its_waiter_learns_its_fate(
    bursts: list[int], failing: set[int], awaited: bool
) -> None:
    """`awaited`: the write returns an awaitable of its commit (a server's), which yields to
    the loop before it ends; otherwise it commits before it returns (SQLite's)."""
    writes: list[list[int]] = []
    committed: list[int] = []

    def commit(rows: Rows) -> None:
        writes.append([subscriber_id for subscriber_id, _ in rows])
        if len(writes) - 1 in failing:
            raise StoreError("the store failed")
        committed.extend(subscriber_id for subscriber_id, _ in rows)

    async def on_the_server(rows: Rows) -> None:
        await asyncio.sleep(0)
        commit(rows)

    write: Write = on_the_server if awaited else commit

    returned: dict[int, bool] = {}

    async def one(writer: LedgerWriter, subscriber_id: int) -> None:
        try:
            await writer.record(subscriber_id, Outcome(DeliveryStatus.SENT, f"250 {subscriber_id}"))
            returned[subscriber_id] = True
        except StoreError:
            returned[subscriber_id] = False

    async def scenario() -> None:
        next_id = 0
        async with ledger_writer(write) as writer:
            for size in bursts:
                ids = range(next_id, next_id + size)
                next_id += size
                await asyncio.gather(*(one(writer, i) for i in ids))

    run_bounded(scenario())
    everyone = list(range(sum(bursts)))
    assert [i for batch in writes for i in batch] == everyone  # each once, in arrival order
    assert sorted(returned) == everyone
    assert [i for i in everyone if returned[i]] == committed  # reported recorded iff committed
