"""Batch leases on a real store (SQLite and PostgreSQL): how long a claim lasts, when a dead
process's batch is taken over, when a batch counts as done, renewal and its failure, release.

Readers are read through `islice(..., 10)` (more than any test has): a process that hands the
same readers out again and again fails the test instead of looping forever.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from itertools import islice
from typing import Any, cast

import pytest

from newsletter import lease
from newsletter.lease import LEASE_TTL, Claims, claim_next, dead_local_owner, new_owner, renewing
from newsletter.models import Batch, DeliveryStatus, Outcome
from newsletter.ports import Store
from newsletter.store import SqlStore
from tests.support.clock import T0, FakeClock
from tests.support.lease_harness import (
    ELSEWHERE,
    VirtualTime,
    batch_rows,
    break_batches_table,
    issue_with_readers,
)
from tests.support.pool_harness import run_bounded

HOST = socket.gethostname()
OTHER = "mail3.elsewhere.example:5151:beef01"


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process of ours that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def virtual(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualTime]:
    clock = FakeClock(T0)
    time = VirtualTime(clock)
    monkeypatch.setattr(lease, "asyncio", time)
    yield time


def planned(store: SqlStore, readers: int, size: int = 10) -> int:
    issue_id, _ = issue_with_readers(store, readers)
    store.plan_round(issue_id, size, None, T0)
    return issue_id


# -- how long a claim lasts, and who may take it over -------------------------------------------


def test_a_claim_lasts_one_minute_and_not_a_moment_longer(store: SqlStore) -> None:
    issue_id = planned(store, 3)
    batch = claim_next(store, issue_id, ELSEWHERE, FakeClock(T0))
    assert batch is not None and batch.number == 1
    assert batch_rows(store, issue_id)[1].claimed_until == T0 + timedelta(seconds=60)
    at_the_end = FakeClock(T0 + timedelta(seconds=60))
    assert claim_next(store, issue_id, OTHER, at_the_end) is None  # still held at its last instant
    just_after = FakeClock(T0 + timedelta(seconds=60, milliseconds=1))
    taken = claim_next(store, issue_id, OTHER, just_after)
    assert taken == batch
    assert batch_rows(store, issue_id)[1].claimed_by == OTHER


def test_a_batch_held_by_a_process_of_this_host_that_exited_is_taken_over_at_once(
    store: SqlStore, dead_pid: int
) -> None:
    issue_id = planned(store, 3)
    crashed = f"{HOST}:{dead_pid}:0badf0"
    first = claim_next(store, issue_id, crashed, FakeClock(T0))
    second = claim_next(store, issue_id, OTHER, FakeClock(T0 + timedelta(seconds=1)))
    assert first is not None and second == first
    assert batch_rows(store, issue_id)[1].claimed_by == OTHER


@pytest.mark.parametrize(
    "holder",
    [
        f"{HOST}:{os.getpid()}:live01",  # this very process: alive
        "mail9.elsewhere.example:{dead}:abc123",  # another host: its pids mean nothing here
    ],
)
def test_a_live_or_foreign_holder_keeps_its_batch_until_the_lease_runs_out(
    store: SqlStore, dead_pid: int, holder: str
) -> None:
    issue_id = planned(store, 3)
    owner = holder.format(dead=dead_pid)
    assert claim_next(store, issue_id, owner, FakeClock(T0)) is not None
    assert claim_next(store, issue_id, OTHER, FakeClock(T0 + timedelta(seconds=59))) is None
    assert batch_rows(store, issue_id)[1].claimed_by == owner


def test_a_dead_processes_name_is_read_from_host_and_pid(dead_pid: int) -> None:
    me = os.getpid()
    assert dead_local_owner(f"{HOST}:{dead_pid}:abc123") is True
    assert dead_local_owner(f"{HOST}:{dead_pid}") is True  # the nonce is not needed
    assert dead_local_owner(f"{HOST}:{me}:abc123") is False
    assert dead_local_owner(f"elsewhere.example:{dead_pid}:abc123") is False
    assert dead_local_owner(f"{HOST}x:{dead_pid}:abc123") is False
    assert dead_local_owner(f"{HOST}:pid{dead_pid}:abc123") is False
    assert dead_local_owner(f"{HOST}::abc123") is False
    assert dead_local_owner("") is False
    assert dead_local_owner(None) is False


def test_a_holder_whose_pid_we_may_not_signal_is_alive_not_dead(dead_pid: int) -> None:
    """pid 1 belongs to root: to anyone else, signalling it is refused, and refused means it
    exists. Checked as an unprivileged user: a forked child drops to `nobody` when run as root."""
    assert dead_local_owner(f"{HOST}:{dead_pid}:x") is True  # as root: the same answer
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            verdicts = (
                dead_local_owner(f"{HOST}:1:abc123"),
                dead_local_owner(f"{HOST}:{dead_pid}:x"),
            )
            os.write(write, repr(verdicts).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    assert answer == "(False, True)"


def test_an_owner_names_this_host_and_process_and_differs_between_runs() -> None:
    owners = {new_owner() for _ in range(20)}
    assert len(owners) == 20  # two runs in one process (the scheduler) never share a lease
    for owner in owners:
        assert re.fullmatch(rf"{re.escape(HOST)}:{os.getpid()}:[0-9a-f]{{6}}", owner), owner
        assert dead_local_owner(owner) is False


# -- a process's batches: claimed one at a time, done when every reader has an outcome ----------


def test_readers_come_batch_by_batch_and_a_batch_is_done_only_when_all_its_readers_are_settled(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 5)
    clock = FakeClock(T0)
    claims = Claims(store, issue_id, new_owner(), clock, size=2)
    readers = claims.readers(lambda: None)
    first, second = next(readers), next(readers)
    assert [first.id, second.id] == ids[:2]
    rows = batch_rows(store, issue_id)
    assert sorted(rows) == [1, 2, 3]  # one round planned, cut into batches of two
    assert rows[1].claimed_by == claims.owner and rows[2].claimed_by is None
    third = next(readers)  # batch 1 handed out completely, batch 2 claimed
    assert third.id == ids[2]
    assert batch_rows(store, issue_id)[2].claimed_by == claims.owner
    clock.advance(seconds=5)
    store.record_outcome(issue_id, first.id, Outcome(DeliveryStatus.SENT, "250"), clock())
    claims.settled(first.id)
    assert batch_rows(store, issue_id)[1].done_at is None  # second is still on the wire
    claims.settled(ids[4])  # not handed out yet: changes nothing
    assert batch_rows(store, issue_id)[1].done_at is None
    store.record_outcome(issue_id, second.id, Outcome(DeliveryStatus.SENT, "250"), clock())
    claims.settled(second.id)
    done = batch_rows(store, issue_id)[1]
    assert done.done_at == clock() and done.claimed_until is None
    assert set(claims.held) == {2}
    rest = []
    for reader in islice(readers, 10):
        rest.append(reader.id)
        store.record_outcome(issue_id, reader.id, Outcome(DeliveryStatus.SENT, "250"), clock())
        claims.settled(reader.id)
    store.record_outcome(issue_id, third.id, Outcome(DeliveryStatus.SENT, "250"), clock())
    claims.settled(third.id)
    assert rest == ids[3:]
    rows = batch_rows(store, issue_id)
    assert sorted(rows) == [1, 2, 3] and all(row.done_at == clock() for row in rows.values())
    assert claims.held == {} and claims.outstanding == {} and claims.batch_of == {}


def test_a_batch_whose_readers_were_all_settled_before_it_ran_out_is_done_when_it_does(
    store: SqlStore,
) -> None:
    """Settling each reader as it comes: the batch is done the moment it has no more."""
    issue_id, _ = issue_with_readers(store, 2)
    clock = FakeClock(T0)
    claims = Claims(store, issue_id, new_owner(), clock, size=2)
    readers = claims.readers(lambda: None)
    for reader in [next(readers), next(readers)]:
        store.record_outcome(issue_id, reader.id, Outcome(DeliveryStatus.SENT, "250"), clock())
        claims.settled(reader.id)
    assert batch_rows(store, issue_id)[1].done_at is None  # not yet known to be exhausted
    assert list(islice(readers, 10)) == []
    assert batch_rows(store, issue_id)[1].done_at == clock()


def test_a_run_plans_one_round_so_a_reader_deferred_in_it_is_not_retried_in_the_same_run(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 3)
    clock = FakeClock(T0)
    claims = Claims(store, issue_id, new_owner(), clock, size=2)
    everyone_due = T0 + timedelta(days=2)  # deferred readers count as due at once (--force)
    seen = []
    for reader in islice(claims.readers(lambda: everyone_due), 10):
        seen.append(reader.id)
        deferred = Outcome(DeliveryStatus.DEFERRED, "451", next_attempt=T0 + timedelta(minutes=1))
        store.record_outcome(issue_id, reader.id, deferred, clock())
        claims.settled(reader.id)
    assert seen == ids
    assert sorted(batch_rows(store, issue_id)) == [1, 2]
    # The next run plans the next round, and it holds the deferred readers again.
    again = Claims(store, issue_id, new_owner(), clock, size=2)
    assert [r.id for r in islice(again.readers(lambda: everyone_due), 10)] == ids


def test_a_batch_taken_back_after_a_takeover_is_finished_once_when_it_is_done_again(
    store: SqlStore,
) -> None:
    """Another process took our batch and then died; we claim it back in the same run. The
    batch is done only once its readers are handed out again *and* settled, not before."""
    issue_id, ids = issue_with_readers(store, 1)
    clock = FakeClock(T0)
    claims = Claims(store, issue_id, new_owner(), clock, size=10)
    everyone_due = T0 + timedelta(days=2)
    readers = claims.readers(lambda: everyone_due)
    first = next(readers)
    store.claim_batch(issue_id, OTHER, T0 + LEASE_TTL, T0, [claims.owner])  # taken over
    deferred = Outcome(DeliveryStatus.DEFERRED, "451", next_attempt=T0 + timedelta(minutes=1))
    store.record_outcome(issue_id, first.id, deferred, clock())
    claims.settled(first.id)
    clock.advance(LEASE_TTL, seconds=1)  # the other process's lease ran out: it died
    again = next(readers)  # batch 1 claimed back; its deferred reader is due
    assert again.id == first.id == ids[0]
    assert batch_rows(store, issue_id)[1].claimed_by == claims.owner
    store.record_outcome(issue_id, again.id, Outcome(DeliveryStatus.SENT, "250"), clock())
    claims.settled(again.id)
    assert batch_rows(store, issue_id)[1].done_at is None  # not yet known to be handed out
    assert list(islice(readers, 10)) == []
    assert batch_rows(store, issue_id)[1].done_at == clock()


def test_nothing_left_to_send_plans_nothing_and_hands_out_nobody(store: SqlStore) -> None:
    issue_id, ids = issue_with_readers(store, 2)
    for subscriber_id in ids:
        store.record_outcome(issue_id, subscriber_id, Outcome(DeliveryStatus.SENT, "250"), T0)
    claims = Claims(store, issue_id, new_owner(), FakeClock(T0), size=10)
    assert list(islice(claims.readers(lambda: None), 10)) == []
    assert batch_rows(store, issue_id) == {}


def test_a_process_arriving_while_another_holds_the_round_leaves_it_to_that_process(
    store: SqlStore,
) -> None:
    issue_id, _ = issue_with_readers(store, 3)
    store.plan_round(issue_id, 10, None, T0)
    assert claim_next(store, issue_id, ELSEWHERE, FakeClock(T0)) is not None
    claims = Claims(store, issue_id, new_owner(), FakeClock(T0 + timedelta(seconds=5)), size=10)
    assert list(islice(claims.readers(lambda: None), 10)) == []
    assert sorted(batch_rows(store, issue_id)) == [1]  # no second round planned meanwhile


def test_a_process_takes_the_batches_left_open_and_then_stops(store: SqlStore) -> None:
    """Another process holds batch 1 of the round: this one sends batch 2 and plans no more."""
    issue_id, ids = issue_with_readers(store, 4)
    store.plan_round(issue_id, 2, None, T0)
    assert claim_next(store, issue_id, ELSEWHERE, FakeClock(T0)) is not None
    clock = FakeClock(T0 + timedelta(seconds=5))
    claims = Claims(store, issue_id, new_owner(), clock, size=2)
    got = []
    for reader in islice(claims.readers(lambda: None), 10):
        got.append(reader.id)
        store.record_outcome(issue_id, reader.id, Outcome(DeliveryStatus.SENT, "250"), clock())
        claims.settled(reader.id)
    assert got == ids[2:]
    rows = batch_rows(store, issue_id)
    assert sorted(rows) == [1, 2] and rows[1].done_at is None and rows[2].done_at == clock()


class Rival:
    """The real store, with another process stepping in at one chosen moment: just before this
    process plans a round, or just after it planned one (before its next claim). The rival
    finishes the batches it holds, takes every other open batch of the issue, defers each of
    their readers (due again at once) and finishes those too."""

    def __init__(self, store: SqlStore, issue_id: int, clock: FakeClock, moment: str) -> None:
        self.store, self.issue_id, self.clock, self.moment = store, issue_id, clock, moment
        self.held: list[Batch] = []
        self.planned = self.stepped_in = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def take(self) -> None:
        batch = claim_next(self.store, self.issue_id, OTHER, self.clock)
        assert batch is not None
        self.held.append(batch)

    def plan_round(self, *args: Any, **options: Any) -> int:
        if self.moment == "before planning":
            self.step_in()
        planned = int(self.store.plan_round(*args, **options))
        self.planned = True
        return planned

    def claim_batch(self, *args: Any) -> Batch | None:
        if self.moment == "after planning" and self.planned:
            self.step_in()
        return self.store.claim_batch(*args)

    def step_in(self) -> None:
        if self.stepped_in:
            return
        self.stepped_in = True
        while (batch := claim_next(self.store, self.issue_id, OTHER, self.clock)) is not None:
            self.held.append(batch)
        now = self.clock()
        for batch in self.held:
            for reader in self.store.pending_recipients(self.issue_id, within=batch):
                deferred = Outcome(DeliveryStatus.DEFERRED, "451", next_attempt=now)
                self.store.record_outcome(self.issue_id, reader.id, deferred, now)
            self.store.finish_batch(batch, OTHER, now)


def test_a_process_that_finds_the_round_in_other_hands_leaves_it_even_if_it_ends_next(
    store: SqlStore,
) -> None:
    """Another process holds the round; right after we saw that, it finishes. We must not
    plan a second round in its wake (its deferred readers wait for the next run)."""
    issue_id, _ = issue_with_readers(store, 2)
    store.plan_round(issue_id, 10, None, T0)
    clock = FakeClock(T0 + timedelta(seconds=5))
    rival = Rival(store, issue_id, clock, "before planning")
    rival.take()
    claims = Claims(cast(Store, rival), issue_id, new_owner(), clock, size=10)
    everyone_due = T0 + timedelta(days=2)
    assert list(islice(claims.readers(lambda: everyone_due), 10)) == []
    assert sorted(batch_rows(store, issue_id)) == [1]


def test_a_run_that_loses_its_fresh_round_to_another_process_plans_no_second_one(
    store: SqlStore,
) -> None:
    """We plan the round; before we claim a batch, another process takes and finishes all of
    it. We stop: one round per run, even though its readers are due again."""
    issue_id, _ = issue_with_readers(store, 2)
    clock = FakeClock(T0)
    rival = Rival(store, issue_id, clock, "after planning")
    claims = Claims(cast(Store, rival), issue_id, new_owner(), clock, size=10)
    everyone_due = T0 + timedelta(days=2)
    assert list(islice(claims.readers(lambda: everyone_due), 10)) == []
    assert rival.stepped_in
    rows = batch_rows(store, issue_id)
    assert sorted(rows) == [1] and rows[1].claimed_by == OTHER and rows[1].done_at == T0


# -- renewal: every third of the TTL, stopping the send when it fails; release on the way out --


def held_batch(store: SqlStore, clock: FakeClock, owner: str) -> tuple[int, Batch]:
    issue_id = planned(store, 3)
    batch = claim_next(store, issue_id, owner, clock)
    assert batch is not None
    return issue_id, batch


def test_a_held_lease_is_renewed_every_twenty_seconds_to_a_minute_ahead(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock, owner = virtual.clock, new_owner()
    issue_id, batch = held_batch(store, clock, owner)

    async def scenario() -> None:
        async with renewing(store, owner, clock, lambda: [batch]) as lost:
            for _ in range(4):
                now = await virtual.elapse()
                assert batch_rows(store, issue_id)[1].claimed_until == now + LEASE_TTL
                assert not lost.is_set()
            # Long past the first lease's end, the batch is still ours alone.
            late = FakeClock(clock.now + LEASE_TTL)
            assert claim_next(store, issue_id, OTHER, late) is None

    run_bounded(scenario())
    assert virtual.delays[:4] == [20.0] * 4
    assert clock.now == T0 + timedelta(seconds=80)


def test_a_lease_taken_over_meanwhile_is_noticed_at_the_next_renewal_and_not_renewed(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock, owner = virtual.clock, new_owner()
    issue_id, batch = held_batch(store, clock, owner)

    async def scenario() -> None:
        async with renewing(store, owner, clock, lambda: [batch]) as lost:
            await virtual.elapse()
            assert not lost.is_set()
            # Another process decided we were dead and took the batch.
            thief = store.claim_batch(issue_id, OTHER, clock() + LEASE_TTL, clock(), [owner])
            assert thief == batch
            await virtual.elapse()
            assert lost.is_set()
            assert not await virtual.asleep()  # the renewer gave up: no more renewals
        assert batch_rows(store, issue_id)[1].claimed_by == OTHER  # not released from the thief

    run_bounded(scenario())
    assert len(virtual.delays) == 2


def test_a_store_fault_while_renewing_counts_as_a_lost_lease(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock, owner = virtual.clock, new_owner()
    _, batch = held_batch(store, clock, owner)

    async def scenario() -> None:
        async with renewing(store, owner, clock, lambda: [batch]) as lost:
            await virtual.elapse()
            break_batches_table(store)
            await virtual.elapse()
            assert lost.is_set()  # we cannot prove we still hold it: stop sending

    run_bounded(scenario())  # and leaving the block does not raise though release fails too


def test_one_lost_batch_among_several_held_is_enough_to_stop(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock, owner = virtual.clock, new_owner()
    issue_id = planned(store, 4, size=2)
    first, second = (
        claim_next(store, issue_id, owner, clock),
        claim_next(store, issue_id, owner, clock),
    )
    assert first is not None and second is not None
    held = [first, second]

    async def scenario() -> None:
        async with renewing(store, owner, clock, lambda: held) as lost:
            store.claim_batch(issue_id, OTHER, clock() + LEASE_TTL, clock(), [owner])  # batch 1
            await virtual.elapse()
            assert lost.is_set()

    run_bounded(scenario())
    assert batch_rows(store, issue_id)[1].claimed_by == OTHER
    assert batch_rows(store, issue_id)[2].claimed_by is None  # ours, released on the way out


def test_leaving_the_block_releases_the_batches_still_held_so_another_takes_them_at_once(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock, owner = virtual.clock, new_owner()
    issue_id, batch = held_batch(store, clock, owner)

    async def scenario() -> None:
        async with renewing(store, owner, clock, lambda: [batch]):
            await virtual.elapse()

    run_bounded(scenario())
    row = batch_rows(store, issue_id)[1]
    assert row.claimed_by is None and row.claimed_until is None
    assert claim_next(store, issue_id, OTHER, clock) == batch


def test_with_nothing_held_the_renewer_writes_nothing_and_never_reports_a_loss(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock, owner = virtual.clock, new_owner()
    issue_id = planned(store, 3)

    async def scenario() -> None:
        async with renewing(store, owner, clock, lambda: []) as lost:
            for _ in range(3):
                await virtual.elapse()
            assert not lost.is_set()

    run_bounded(scenario())
    assert batch_rows(store, issue_id)[1].claimed_by is None


# -- after its own batches: waiting for the others, taking over what they leave -----------------


def waiting(
    store: SqlStore, issue_id: int, virtual: VirtualTime, stop: list[bool]
) -> Coroutine[Any, Any, bool]:
    return lease.wait_for_takeover(store, issue_id, virtual.clock, lambda: bool(stop))


def test_a_live_foreign_holder_is_waited_for_until_its_lease_has_run_out(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock = virtual.clock
    issue_id = planned(store, 3)
    assert claim_next(store, issue_id, OTHER, clock) is not None  # then that host goes silent

    async def scenario() -> bool:
        task = asyncio.ensure_future(waiting(store, issue_id, virtual, []))
        while await virtual.asleep():
            await virtual.elapse()
        return await task

    assert run_bounded(scenario()) is True
    # Still held at the lease's last instant; free at the first look after it.
    assert clock.now == T0 + LEASE_TTL + timedelta(seconds=lease.TAKEOVER_POLL)
    assert set(virtual.delays) == {lease.TAKEOVER_POLL}
    assert claim_next(store, issue_id, new_owner(), clock) is not None


def test_a_holder_that_finishes_its_batch_ends_the_wait_with_nothing_to_take(
    store: SqlStore, virtual: VirtualTime
) -> None:
    clock = virtual.clock
    issue_id = planned(store, 3)
    batch = claim_next(store, issue_id, OTHER, clock)
    assert batch is not None

    async def scenario() -> bool:
        task = asyncio.ensure_future(waiting(store, issue_id, virtual, []))
        for _ in range(3):
            await virtual.elapse()
        assert not task.done()
        store.finish_batch(batch, OTHER, clock())
        await virtual.elapse()
        return await task

    assert run_bounded(scenario()) is False
    assert len(virtual.delays) == 4


@pytest.mark.parametrize("left", ["dead here", "given back", "none open"])
def test_a_dead_or_released_batch_is_taken_at_once_and_none_open_means_no_wait(
    store: SqlStore, virtual: VirtualTime, dead_pid: int, left: str
) -> None:
    clock = virtual.clock
    issue_id = planned(store, 3)
    holder = f"{HOST}:{dead_pid}:0badf0" if left == "dead here" else OTHER
    batch = claim_next(store, issue_id, holder, clock)
    assert batch is not None
    if left == "given back":
        store.release_batch(batch, holder)
    if left == "none open":
        store.finish_batch(batch, holder, clock())
    found = run_bounded(waiting(store, issue_id, virtual, []))
    assert found is (left != "none open")
    assert virtual.delays == []


def test_a_stopping_run_does_not_wait(store: SqlStore, virtual: VirtualTime) -> None:
    clock = virtual.clock
    issue_id = planned(store, 3)
    assert claim_next(store, issue_id, OTHER, clock) is not None
    stop: list[bool] = []

    async def scenario() -> bool:
        task = asyncio.ensure_future(waiting(store, issue_id, virtual, stop))
        await virtual.elapse()
        stop.append(True)
        await virtual.elapse()
        return await task

    assert run_bounded(scenario()) is False
    assert run_bounded(waiting(store, issue_id, virtual, [True])) is False


def test_a_takeover_round_claims_what_is_left_and_never_plans_another(store: SqlStore) -> None:
    issue_id, _ = issue_with_readers(store, 2)
    claims = Claims(store, issue_id, new_owner(), FakeClock(T0), size=10, plan=False)
    assert list(islice(claims.readers(lambda: None), 10)) == []
    assert batch_rows(store, issue_id) == {}  # readers needing it, and still no round planned


@pytest.mark.parametrize("readers", [1, 9, 10, 11, 20, 25])
def test_a_round_cuts_the_readers_still_due_into_batches_of_the_size_by_id(
    store: SqlStore, readers: int
) -> None:
    issue_id, ids = issue_with_readers(store, readers)
    done = set(ids[3::4])  # a reader who already has an outcome is not planned again
    for sid in done:
        store.record_outcome(issue_id, sid, Outcome(DeliveryStatus.SENT, "250"), T0)
    due = [sid for sid in ids if sid not in done]
    expected = [(0 if n == 0 else due[n - 1], due[min(n + 10, len(due)) - 1])
                for n in range(0, len(due), 10)]  # fmt: skip
    assert store.plan_round(issue_id, 10, None, T0) == len(expected)
    rows = batch_rows(store, issue_id)
    assert [(row.low_id, row.high_id) for row in rows.values()] == expected
    assert sorted(rows) == list(range(1, len(expected) + 1))


# -- a round planned a few batches at a time, as the senders need them -------------------------


def plan_in_pieces(store: SqlStore, issue_id: int, size: int, limit: int) -> list[int]:
    """Plan the whole round `limit` batches a call; the batches each call planned."""
    calls = [store.plan_round(issue_id, size, None, T0, limit=limit)]
    while calls[-1]:
        calls.append(store.plan_round(issue_id, size, None, T0, start=False, limit=limit))
    return calls


@pytest.mark.parametrize("readers", [1, 9, 10, 11, 30, 31])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_round_planned_a_few_batches_a_call_is_the_round_planned_at_once(
    store: SqlStore, readers: int, limit: int
) -> None:
    issue_id, ids = issue_with_readers(store, readers)
    done = set(ids[2::5])  # readers with an outcome already are skipped, in pieces as at once
    for sid in done:
        store.record_outcome(issue_id, sid, Outcome(DeliveryStatus.SENT, "250"), T0)
    due = [sid for sid in ids if sid not in done]
    expected = [(0 if n == 0 else due[n - 1], due[min(n + 10, len(due)) - 1])
                for n in range(0, len(due), 10)]  # fmt: skip
    calls = plan_in_pieces(store, issue_id, 10, limit)
    assert all(planned <= limit for planned in calls) and sum(calls) == len(expected)
    rows = batch_rows(store, issue_id)
    assert [(row.low_id, row.high_id) for row in rows.values()] == expected
    assert sorted(rows) == list(range(1, len(expected) + 1))
    # Planned to the end: no call plans more, with or without leave to start a round.
    assert store.plan_round(issue_id, 10, None, T0, start=False, limit=limit) == 0
    assert store.plan_round(issue_id, 10, None, T0, limit=limit) == 0  # its batches are open
    assert len(batch_rows(store, issue_id)) == len(expected)


def test_the_round_being_planned_goes_on_where_it_stopped_and_the_next_starts_from_the_top(
    store: SqlStore,
) -> None:
    issue_id, ids = issue_with_readers(store, 25)
    assert store.plan_round(issue_id, 10, None, T0, start=False) == 0  # no round to go on with
    assert batch_rows(store, issue_id) == {}
    assert store.plan_round(issue_id, 10, None, T0, limit=1) == 1
    batch = claim_next(store, issue_id, ELSEWHERE, FakeClock(T0))
    assert batch is not None and (batch.low, batch.high) == (0, ids[9])
    # Its batch is open, yet the round goes on (it is the same round), from where it stopped.
    assert store.plan_round(issue_id, 10, None, T0, start=False, limit=1) == 1
    assert store.plan_round(issue_id, 10, None, T0, limit=5) == 1  # the last five readers
    rows = batch_rows(store, issue_id)
    assert [(row.low_id, row.high_id) for row in rows.values()] == [
        (0, ids[9]), (ids[9], ids[19]), (ids[19], ids[24])
    ]  # fmt: skip
    # Every reader deferred, every batch done: the next round (due now) starts from the top.
    now = T0 + timedelta(minutes=5)
    for sid in ids:
        store.record_outcome(
            issue_id, sid, Outcome(DeliveryStatus.DEFERRED, "451", next_attempt=T0), T0
        )
    for number in rows:
        store.claim_batch(issue_id, OTHER, now + LEASE_TTL, now, [ELSEWHERE])
        store.finish_batch(Batch(issue_id, number, 0, 0), OTHER, now)
    assert store.plan_round(issue_id, 10, now, now, start=False) == 0  # a new round is a start
    assert store.plan_round(issue_id, 10, now, now, limit=1) == 1
    assert (batch_rows(store, issue_id)[4].low_id, batch_rows(store, issue_id)[4].high_id) == (
        0, ids[9]
    )  # fmt: skip


def test_a_process_plans_a_few_batches_before_its_first_reader_and_the_rest_as_it_goes(
    store: SqlStore,
) -> None:
    count = 2 * lease.PLAN_AHEAD + 3
    issue_id, ids = issue_with_readers(store, count)
    clock = FakeClock(T0)
    claims = Claims(store, issue_id, new_owner(), clock, size=1)
    readers = claims.readers(lambda: None)
    first = next(readers)
    assert first.id == ids[0]
    assert len(batch_rows(store, issue_id)) == lease.PLAN_AHEAD
    seen = [first.id]
    store.record_outcome(issue_id, first.id, Outcome(DeliveryStatus.SENT, "250"), clock())
    claims.settled(first.id)
    for reader in islice(readers, 2 * count):
        seen.append(reader.id)
        store.record_outcome(issue_id, reader.id, Outcome(DeliveryStatus.SENT, "250"), clock())
        claims.settled(reader.id)
    assert seen == ids  # everyone once, in order, over three calls of planning
    rows = batch_rows(store, issue_id)
    assert sorted(rows) == list(range(1, count + 1))
    assert all(row.done_at == clock() for row in rows.values())


def test_a_process_that_joins_late_goes_on_with_the_round_another_started(
    store: SqlStore,
) -> None:
    """The first process planned a few batches and holds them; a second, out of batches to
    claim, plans the next ones instead of leaving them to the first (or to tomorrow)."""
    issue_id, ids = issue_with_readers(store, 2 * lease.PLAN_AHEAD + 1)
    first = Claims(store, issue_id, new_owner(), FakeClock(T0), size=1)
    mine = first.readers(lambda: None)
    taken = [next(mine).id]
    for _ in range(lease.PLAN_AHEAD - 1):  # the first holds every batch planned so far
        batch = claim_next(store, issue_id, ELSEWHERE, FakeClock(T0))
        assert batch is not None
    second = Claims(store, issue_id, new_owner(), FakeClock(T0), size=1)
    theirs = [reader.id for reader in islice(second.readers(lambda: None), 100)]
    assert theirs == ids[lease.PLAN_AHEAD :]
    assert taken == ids[:1]
