"""Group commit of the delivery ledger on a real store: an outcome counts as recorded only once
its row is committed, outcomes that arrive together share one transaction, and every outcome is
written exactly once, also around a failed write and a waiter that gave up. PostgreSQL's
commit is awaited while the event loop goes on; SQLite's is a plain call on the loop.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

import pytest

from newsletter.compose import ComposedMessage
from newsletter.config import load_settings
from newsletter.errors import StoreError
from newsletter.ledger_writer import LedgerWriter, Receipt, Rows, Write, ledger_writer
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import DeliveryStatus, Outcome
from newsletter.pipeline import Run, run_issue
from newsletter.ports import LedgerWrite
from newsletter.store import SqlStore
from tests.support.clock import T0
from tests.support.lease_harness import issue_with_readers
from tests.support.pool_harness import run_bounded
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, deployment

SENT = Outcome(DeliveryStatus.SENT, "250 2.0.0 accepted")
DEFERRED = Outcome(DeliveryStatus.DEFERRED, "451 4.3.0 try again later")


async def wait_for(receipt: Receipt) -> None:
    await receipt


class Ledger:
    """The store's own ledger writer for one issue, noting what each transaction carried."""

    def __init__(self, store: SqlStore, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
        self.writes: list[list[int]] = []
        self.fail_next = False

    def bind(self, write_rows: LedgerWrite) -> Write:
        def write(rows: Rows) -> Awaitable[None] | None:
            self.writes.append([subscriber_id for subscriber_id, _ in rows])
            if self.fail_next:
                self.fail_next = False
                raise StoreError("the store failed: disk full")
            return write_rows(rows, T0)

        return write

    def stored(self) -> dict[str, int]:
        return self.store.outcome_counts(self.issue_id)


async def with_writer(
    store: SqlStore, issue_id: int, ledger: Ledger, body: Callable[[LedgerWriter], object]
) -> None:
    async with (
        store.ledger_session(issue_id) as write_rows,
        ledger_writer(ledger.bind(write_rows)) as writer,
    ):
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


def test_a_servers_commit_is_awaited_while_the_loop_goes_on_and_sqlites_holds_it(
    store: SqlStore,
) -> None:
    """Another transaction holds what the commit needs (PostgreSQL: the reader's row; SQLite:
    the write lock) until a timer in another thread lets go. On PostgreSQL the loop goes on
    meanwhile: a short sleep ends before the release. SQLite's commit is this process's own
    work, done on the loop: the sleep ends only after it."""
    issue_id, ids = issue_with_readers(store, 1)
    store.record_outcomes(issue_id, [(ids[0], DEFERRED)], T0)  # a row to hold
    ledger = Ledger(store, issue_id)
    holder = store.engine.raw_connection()
    cursor = holder.cursor()
    if store.engine.dialect.name == "postgresql":
        cursor.execute("SELECT 1 FROM deliveries WHERE subscriber_id = %s FOR UPDATE", (ids[0],))
    else:
        cursor.execute("BEGIN IMMEDIATE")
    released: list[float] = []

    def release() -> None:
        holder.commit()
        released.append(time.monotonic())

    ticked: list[float] = []

    async def body(writer: LedgerWriter) -> None:
        recording = asyncio.ensure_future(wait_for(writer.record(ids[0], SENT)))
        await asyncio.sleep(0.05)
        ticked.append(time.monotonic())
        await recording

    timer = threading.Timer(0.4, release)
    timer.start()
    try:
        run_bounded(with_writer(store, issue_id, ledger, body))
    finally:
        timer.join()
        cursor.close()
        holder.close()
    server = store.engine.dialect.name == "postgresql"
    assert (ticked[0] < released[0]) == server
    assert ledger.stored() == {"sent": 1}


def test_outcomes_keep_coming_while_a_write_is_awaited_and_share_the_next_one() -> None:
    """What awaiting a server's commit is for: while one commit waits, the loop goes on."""
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(rows: Rows) -> None:
        writes.append([subscriber_id for subscriber_id, _ in rows])
        if len(writes) == 1:
            await release.wait()

    async def scenario() -> None:
        async with ledger_writer(write) as writer:
            first = asyncio.ensure_future(wait_for(writer.record(1, SENT)))
            while not writes:
                await asyncio.sleep(0.001)
            more = [asyncio.ensure_future(wait_for(writer.record(i, SENT))) for i in (2, 3, 4)]
            await asyncio.sleep(0.01)
            assert not first.done()  # reported recorded only once its write ends
            release.set()
            await asyncio.gather(first, *more)

    run_bounded(scenario())
    assert writes == [[1], [2, 3, 4]]


def test_leaving_the_block_waits_for_a_write_whose_waiter_was_cancelled() -> None:
    """The store closes its session right after: no write may still be using it."""
    started, finished = asyncio.Event(), asyncio.Event()

    async def write(rows: Rows) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()

    async def scenario() -> None:
        async with ledger_writer(write) as writer:
            recording = asyncio.ensure_future(wait_for(writer.record(1, SENT)))
            await started.wait()
            recording.cancel()  # a forced stop: nobody waits for the write any more
        assert finished.is_set()

    run_bounded(scenario())


def test_a_send_records_every_outcome_with_no_thread_of_its_own(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline hands the store's writes to the writer: every outcome is recorded (and
    reported to the progress hook) on both stores, and no thread is started for the ledger
    (PostgreSQL's commits are awaited on the loop)."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    readers = [f"reader{n}@example.org" for n in range(5)]
    before = {thread.ident for thread in threading.enumerate()}
    started: set[str] = set()
    with SmtpServer() as smtp, deployment(tmp_path, smtp, readers, database_url=store_url) as world:
        settings = load_settings(world.config)
        before |= {thread.ident for thread in threading.enumerate()}  # the SMTP server's

        def progress(message: ComposedMessage, outcome: Outcome) -> None:
            started.update(t.name for t in threading.enumerate() if t.ident not in before)

        transport = SmtpTransport(settings.smtp)
        run = Run(settings, world.store, transport, world.clock, on_outcome=progress)
        summary, _ = asyncio.run(run_issue(run, date.fromisoformat(ISSUE_DATE)))
        assert summary.counts == {"sent": 5} and len(smtp.messages) == 5
        assert world.store.outcome_counts(1) == {"sent": 5}
    # The loop's default executor ("asyncio_N") read the file feed while the issue was made.
    assert {name for name in started if not name.startswith("asyncio_")} == set()


def test_a_commit_waits_for_a_waiter_and_then_takes_every_outcome_handed_over(
    store: SqlStore,
) -> None:
    """Outcomes are taken at once and committed when someone needs one: that is the group."""
    issue_id, ids = issue_with_readers(store, 4)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        receipts = [writer.record(i, SENT) for i in ids[:3]]
        for _ in range(20):
            await asyncio.sleep(0)
        assert ledger.writes == [] and ledger.stored() == {}
        await receipts[1]
        assert ledger.writes == [ids[:3]] and ledger.stored() == {"sent": 3}
        await receipts[0]
        await receipts[2]  # committed already: nothing more is written
        await writer.record(ids[3], SENT)

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids[:3], ids[3:]]


def test_an_outcome_handed_over_one_pass_of_the_loop_after_the_wait_shares_its_commit(
    store: SqlStore,
) -> None:
    """Replies read in the same pass of the loop resume their workers one pass later than the
    waiter: the writer takes its group a pass after it is woken, so theirs join the commit.
    One handed over later than that waits for the next commit."""
    issue_id, ids = issue_with_readers(store, 3)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        async def after(passes: int, subscriber_id: int) -> Receipt:
            for _ in range(passes):
                await asyncio.sleep(0)
            return writer.record(subscriber_id, SENT)

        first = await after(3, ids[0])  # by now the writer waits to be woken, as in a send
        soon = asyncio.ensure_future(after(1, ids[1]))
        late = asyncio.ensure_future(after(3, ids[2]))
        await first
        await (await soon)
        await (await late)

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids[:2], ids[2:]]
    assert ledger.stored() == {"sent": 3}


def test_leaving_the_block_stores_outcomes_nobody_waited_for(store: SqlStore) -> None:
    issue_id, ids = issue_with_readers(store, 2)
    ledger = Ledger(store, issue_id)

    async def body(writer: LedgerWriter) -> None:
        await writer.record(ids[0], SENT)
        writer.record(ids[1], SENT)  # a worker stopped before it waited, say

    run_bounded(with_writer(store, issue_id, ledger, body))
    assert ledger.writes == [ids[:1], ids[1:]]
    assert ledger.stored() == {"sent": 2}


def test_leaving_the_block_reports_a_failed_last_write_unless_an_error_is_on_its_way(
    store: SqlStore,
) -> None:
    """On a clean exit the failure is the news; after another error that error is."""
    issue_id, ids = issue_with_readers(store, 2)
    ledger = Ledger(store, issue_id)

    async def clean_exit(writer: LedgerWriter) -> None:
        ledger.fail_next = True
        writer.record(ids[0], SENT)

    with pytest.raises(StoreError, match="disk full"):
        run_bounded(with_writer(store, issue_id, ledger, clean_exit))

    async def failing(writer: LedgerWriter) -> None:
        ledger.fail_next = True
        writer.record(ids[1], SENT)
        raise LookupError("the first error")

    with pytest.raises(LookupError, match="the first error"):
        run_bounded(with_writer(store, issue_id, ledger, failing))
    assert ledger.writes == [ids[:1], ids[1:]] and ledger.stored() == {}


def test_a_second_wait_for_an_outcome_already_being_written_writes_nothing_more() -> None:
    """Two waiters for one outcome (the worker's gate and its last wait, say) mean one write."""
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(rows: Rows) -> None:
        writes.append([subscriber_id for subscriber_id, _ in rows])
        await release.wait()

    async def scenario() -> None:
        async with ledger_writer(write) as writer:
            receipt = writer.record(1, SENT)
            first = asyncio.ensure_future(wait_for(receipt))
            while not writes:
                await asyncio.sleep(0.001)
            again = asyncio.ensure_future(wait_for(receipt))  # wakes the writer once more
            await asyncio.sleep(0.01)
            release.set()
            await asyncio.gather(first, again)
            for _ in range(20):
                await asyncio.sleep(0.001)

    run_bounded(scenario())
    assert writes == [[1]]


def test_a_waiter_cancelled_during_a_write_does_not_cancel_its_outcome() -> None:
    """A worker cancelled while its outcome waits behind a write under way (another worker
    failed, say): the outcome is still stored on the way out, and the first error goes up."""
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(rows: Rows) -> None:
        writes.append([subscriber_id for subscriber_id, _ in rows])
        if len(writes) == 1:
            await release.wait()

    async def scenario() -> None:
        async with ledger_writer(write) as writer:
            first = asyncio.ensure_future(wait_for(writer.record(1, SENT)))
            while not writes:
                await asyncio.sleep(0.001)
            waiter = asyncio.ensure_future(wait_for(writer.record(2, SENT)))
            await asyncio.sleep(0.01)
            waiter.cancel()
            release.set()
            await first
            raise LookupError("another worker's error")

    with pytest.raises(LookupError, match="another worker's error"):
        run_bounded(scenario())
    assert writes == [[1], [2]]


def test_leaving_the_block_waits_for_the_write_under_way_and_reports_its_failure() -> None:
    """A clean exit while a write is awaited: the exit waits for it, and a failure of that
    write is the news (its rows are not stored)."""
    started, release = asyncio.Event(), asyncio.Event()

    async def write(rows: Rows) -> None:
        started.set()
        await release.wait()
        raise StoreError("the store failed: disk full")

    async def scenario() -> None:
        waiting: list[asyncio.Future[object]] = []
        try:
            async with ledger_writer(write) as writer:
                waiting.append(asyncio.ensure_future(asyncio.gather(writer.record(1, SENT))))
                await started.wait()
                release.set()
        finally:  # the waiter hears of the failure too
            assert [type(r) for r in await asyncio.gather(*waiting, return_exceptions=True)] == [
                StoreError
            ]

    with pytest.raises(StoreError, match="disk full"):
        run_bounded(scenario())


def test_a_failed_write_nobody_waits_for_any_more_prints_no_second_traceback() -> None:
    """The store is lost mid-send: the first waiter gets the error and the send stops with it.
    Outcomes in the same write whose workers stopped on that error are not waited for, and
    must not print it again when collected ("Future exception was never retrieved")."""
    reported: list[dict[str, object]] = []

    def failing(rows: Rows) -> None:
        raise StoreError("the store failed: the connection is closed")

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(context)
        )
        async with ledger_writer(failing) as writer:
            receipts = [writer.record(i, SENT) for i in (1, 2, 3)]
            await receipts[0]

    with pytest.raises(StoreError):
        run_bounded(scenario())
    gc.collect()  # the error's traceback holds the futures in a cycle
    assert [context["message"] for context in reported] == []


class _Halt(BaseException):
    """Raised by a write, and no Exception: the writer's own handling cannot take it."""


def test_a_writer_stopped_by_what_a_write_raised_fails_its_waiters_at_once() -> None:
    """A waiter must not wait for ever on a writer that is gone: the outcome in the write that
    stopped it, and one handed over after, each fail with a StoreError; what stopped the writer
    still goes up from the end of the send."""
    failures: list[str] = []

    def write(rows: Rows) -> None:
        raise _Halt

    async def scenario() -> None:
        async with ledger_writer(write) as writer:
            first = writer.record(1, SENT)
            with pytest.raises(StoreError, match=r"writer stopped with 1 outcome") as caught:
                await first
            failures.append(str(caught.value))
            with pytest.raises(StoreError, match=r"writer stopped"):
                await writer.record(2, SENT)

    with pytest.raises(_Halt):
        run_bounded(scenario(), 10)
    assert len(failures) == 1


def test_the_end_of_a_send_does_not_wait_for_ever_on_a_writer_that_is_gone() -> None:
    """Outcomes handed to a writer whose task has ended are not stored by anyone: the exit's
    flush reports them (the next run sends those readers again) instead of waiting."""
    written: list[tuple[int, Outcome]] = []

    async def scenario() -> None:
        async with ledger_writer(written.extend) as writer:
            await writer.record(1, SENT)
            assert writer.task is not None
            writer.task.cancel()
            await asyncio.wait([writer.task])
            writer.record(2, SENT)  # nobody waits for it; the exit's flush does

    with pytest.raises(StoreError, match=r"writer stopped with 1 outcome"):
        run_bounded(scenario(), 10)
    assert [subscriber for subscriber, _ in written] == [1]


def test_a_writer_driven_by_its_own_run_stores_and_flushes() -> None:
    """`LedgerWriter` works without `ledger_writer` too, its `run` started by the caller."""
    written: list[tuple[int, Outcome]] = []

    async def scenario() -> None:
        writer = LedgerWriter(written.extend)
        first = writer.record(1, SENT)  # before its writer runs
        task = asyncio.create_task(writer.run())
        await first
        writer.record(2, SENT)
        await writer.flush()
        task.cancel()
        await asyncio.wait([task])

    run_bounded(scenario(), 10)
    assert [subscriber for subscriber, _ in written] == [1, 2]


def test_a_writer_cancelled_before_it_ever_ran_fails_the_end_of_the_send_at_once() -> None:
    """A task cancelled before its first step never runs its own clean-up: the exit's flush,
    waiting on the writer's outcomes, sees the task end and reports them."""
    written: list[tuple[int, Outcome]] = []

    async def scenario() -> None:
        async with ledger_writer(written.extend) as writer:
            assert writer.task is not None
            writer.task.cancel()  # before the writer's first step
            writer.record(1, SENT)

    with pytest.raises(StoreError, match=r"writer stopped with 1 outcome"):
        run_bounded(scenario(), 10)
    assert written == []
