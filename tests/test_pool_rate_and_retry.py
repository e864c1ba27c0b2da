"""The pool's pacing: the configured rate (also at 1 message/s and below), the retry count, the
backoff between tries, and when a deferred message may be tried again.

The pool sleeps on the event loop, so besides what a real aiosmtpd server saw (how many tries,
how far apart) the tests read the schedule the pool computed: `LoopSleeps` stands in for the
`asyncio` the pool module sees, passes every sleep on unchanged, and notes (loop time, seconds).
Spacing is only ever bounded from below in real time; exact figures come from the schedule.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from newsletter import pool
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import DeliveryStatus
from newsletter.pool import DeliveryPolicy, RateLimiter
from tests.support.clock import T0, FakeClock
from tests.support.pool_harness import LoopSleeps, message, run, run_bounded, smtp_config
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopSleeps]:
    spy = LoopSleeps()
    monkeypatch.setattr(pool, "asyncio", spy)
    yield spy


class Arrivals:
    """When the server saw each RCPT (its own monotonic clock), by address."""

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.at: dict[str, list[float]] = {}

    def __call__(self, phase: str, address: str) -> str | None:
        if phase == "rcpt":
            self.at.setdefault(address, []).append(time.monotonic())
            return self.reply
        return None


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.mark.parametrize("rate, count", [(1.0, 3), (0.5, 2)])
def test_a_rate_of_one_message_a_second_or_less_spaces_the_messages(
    sleeps: LoopSleeps, rate: float, count: int
) -> None:
    interval = 1 / rate
    arrivals = Arrivals()
    with SmtpServer() as server:
        server.handler.behaviour = arrivals
        policy = DeliveryPolicy(connections=2, rate_limit=rate)
        recorded = run(
            [message(i) for i in range(count)], SmtpTransport(smtp_config(server.port)), policy
        )
    assert {o.status for o in recorded.outcomes.values()} == {DeliveryStatus.SENT}
    starts = sorted(times[0] for times in arrivals.at.values())
    assert len(starts) == count
    assert all(gap >= 0.9 * interval for gap in gaps(starts))  # real spacing, from below
    # The schedule: every message after the first waits for its own slot, one interval apart.
    slots = [at + delay for at, delay in sleeps.sleeps]
    assert len(slots) == count - 1
    assert all(0 < delay <= (count - 1) * interval for _, delay in sleeps.sleeps)
    assert gaps(slots) == pytest.approx([interval] * (count - 2), abs=0.01)


def test_rate_zero_means_unlimited_and_never_waits(sleeps: LoopSleeps) -> None:
    with SmtpServer() as server:
        policy = DeliveryPolicy(connections=2, rate_limit=0.0)
        recorded = run(
            [message(i) for i in range(12)], SmtpTransport(smtp_config(server.port)), policy
        )
    assert len(recorded.outcomes) == 12 == len(server.messages)
    assert sleeps.sleeps == []


@pytest.mark.parametrize("rate", [1.0, 0.25, 4.0])
def test_the_limiter_hands_out_slots_one_interval_apart_across_callers(
    sleeps: LoopSleeps, rate: float
) -> None:
    """Three callers at once (three connections): the first goes now, the others wait in turn."""
    limiter = RateLimiter(rate)

    async def three_at_once() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        waiting = [asyncio.ensure_future(limiter.wait()) for _ in range(3)]
        await asyncio.sleep(0)  # let all three take their slot before any is released
        for task in waiting:
            task.cancel()  # the schedule is what is pinned; nobody needs to wait it out
        await asyncio.gather(*waiting, return_exceptions=True)
        return start

    start = run_bounded(three_at_once())
    interval = 1 / rate
    assert limiter.interval == pytest.approx(interval)
    slots = [at + delay for at, delay in sleeps.sleeps]
    assert len(slots) == 2  # the first caller did not wait at all
    assert slots[0] - start == pytest.approx(interval, abs=0.01)
    assert slots[1] - start == pytest.approx(2 * interval, abs=0.01)


def test_the_default_policy_tries_three_times_half_a_second_then_one_second_apart(
    sleeps: LoopSleeps,
) -> None:
    """The retry count and backoff a send runs on (`DeliveryPolicy()` with its defaults)."""
    arrivals = Arrivals("451 4.7.1 Greylisted, try again later")
    clock = FakeClock(T0)
    with SmtpServer() as server:
        server.handler.behaviour = arrivals
        transport = SmtpTransport(smtp_config(server.port))
        recorded = run([message(1)], transport, DeliveryPolicy(connections=1), clock=clock)
    tries = arrivals.at["reader1@example.org"]
    assert len(tries) == 3
    assert [delay for _, delay in sleeps.sleeps] == [0.5, 1.0]
    real = gaps(tries)
    assert real[0] >= 0.45 and real[1] >= 0.95
    outcome = recorded.outcomes["reader1@example.org"]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert outcome.attempts == 3
    assert outcome.detail.endswith("451 4.7.1 Greylisted, try again later")
    assert outcome.next_attempt == T0 + timedelta(minutes=30)  # the default deferral
    assert server.messages == []


def test_backoff_doubles_from_the_configured_start_for_every_further_try(
    sleeps: LoopSleeps,
) -> None:
    arrivals = Arrivals("452 4.2.2 Mailbox full")
    with SmtpServer() as server:
        server.handler.behaviour = arrivals
        policy = DeliveryPolicy(connections=1, attempts=5, backoff=0.01)
        recorded = run([message(1)], SmtpTransport(smtp_config(server.port)), policy)
    assert len(arrivals.at["reader1@example.org"]) == 5
    assert [delay for _, delay in sleeps.sleeps] == [0.01, 0.02, 0.04, 0.08]
    assert recorded.outcomes["reader1@example.org"].attempts == 5


@pytest.mark.parametrize("attempts", [1, 2])
def test_a_message_gets_exactly_the_configured_number_of_tries(
    sleeps: LoopSleeps, attempts: int
) -> None:
    arrivals = Arrivals("421 4.3.0 Try again later")
    with SmtpServer() as server:
        server.handler.behaviour = arrivals
        policy = DeliveryPolicy(connections=1, attempts=attempts, backoff=0.01)
        recorded = run([message(1)], SmtpTransport(smtp_config(server.port)), policy)
    assert len(arrivals.at["reader1@example.org"]) == attempts
    assert len(sleeps.sleeps) == attempts - 1  # no wait before the first try, none after the last
    assert recorded.outcomes["reader1@example.org"].attempts == attempts
    assert recorded.outcomes["reader1@example.org"].status is DeliveryStatus.DEFERRED


def test_a_deferred_message_is_due_again_the_configured_time_after_the_clock(
    sleeps: LoopSleeps,
) -> None:
    """Relative to the injected clock, never the wall clock (three years away in tests)."""
    clock = FakeClock(T0 + timedelta(days=3, hours=2))
    with SmtpServer() as server:
        server.handler.behaviour = Arrivals("450 4.2.1 Mailbox busy")
        policy = DeliveryPolicy(
            connections=2, attempts=1, backoff=0.01, defer_for=timedelta(minutes=7)
        )
        recorded = run(
            [message(i) for i in range(3)],
            SmtpTransport(smtp_config(server.port)),
            policy,
            clock=clock,
        )
    retry_at = {o.next_attempt for o in recorded.outcomes.values()}
    assert retry_at == {clock.now + timedelta(minutes=7)}
    assert all(
        o.next_attempt is not None and o.next_attempt > clock.now
        for o in recorded.outcomes.values()
    )


def test_a_refusal_after_a_retry_is_final_and_says_which_try_and_which_code(
    sleeps: LoopSleeps,
) -> None:
    """Greylisted first, then "no such user": failed on the second try, with the reply code
    the bounce rules read (a hard bounce is decided on it) and the message's own id."""
    tries: dict[str, int] = {}

    def greylist_then_refuse(phase: str, address: str) -> str | None:
        if phase != "rcpt":
            return None
        tries[address] = tries.get(address, 0) + 1
        if tries[address] == 1:
            return "451 4.7.1 Greylisted, try again later"
        return "550 5.1.1 No such user here"

    with SmtpServer() as server:
        server.handler.behaviour = greylist_then_refuse
        policy = DeliveryPolicy(connections=1, attempts=3, backoff=0.01)
        item = message(1)
        recorded = run([item], SmtpTransport(smtp_config(server.port)), policy)
    outcome = recorded.outcomes["reader1@example.org"]
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.attempts == 2 and tries["reader1@example.org"] == 2
    assert outcome.code == 550
    assert outcome.detail.endswith("550 5.1.1 No such user here")
    assert outcome.message_id == item.message_id
    assert outcome.next_attempt is None
    assert [delay for _, delay in sleeps.sleeps] == [0.01]  # no waiting after a final answer
    assert server.messages == []


def test_a_deferred_outcome_carries_the_messages_own_id(sleeps: LoopSleeps) -> None:
    with SmtpServer() as server:
        server.handler.behaviour = Arrivals("450 4.2.1 Mailbox busy")
        item = message(7)
        policy = DeliveryPolicy(connections=1, attempts=1)
        recorded = run([item], SmtpTransport(smtp_config(server.port)), policy)
    outcome = recorded.outcomes["reader7@example.org"]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert outcome.message_id == item.message_id == "<7@ree-news.example.com>"


@pytest.mark.parametrize("name", ["connections", "attempts", "max_connect_failures"])
@pytest.mark.parametrize("value", [0, -1])
def test_a_policy_that_could_not_send_anything_is_refused(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"DeliveryPolicy.{name} must be at least 1"):
        DeliveryPolicy(**{name: value})  # type: ignore[arg-type]
    assert getattr(DeliveryPolicy(**{name: 1}), name) == 1  # type: ignore[arg-type]
