"""'Server down' means N failed connects *in a row*: the threshold, its reset, its default.

A relay that is down must stop the run early (no point deferring a million readers one by one),
but a long send meets the odd refused connect (a relay restarting, a full backlog): those must
never add up to "down". The connects go to real sockets: a port nothing listens on (refused at
once) or a live aiosmtpd server, in the order `ScriptedTransport` is given.
"""

from __future__ import annotations

import pytest

from newsletter.errors import ServerRefusedError
from newsletter.models import DeliveryStatus
from newsletter.pool import DeliveryPolicy
from tests.support.config import closed_port
from tests.support.pool_harness import Recorded, ScriptedTransport, message, run
from tests.support.smtp_server import DROP, SmtpServer


def policy(threshold: int | None, attempts: int) -> DeliveryPolicy:
    """One connection, so connects happen in script order; a short backoff."""
    if threshold is None:  # the default threshold, the one `newsletter send` uses
        return DeliveryPolicy(connections=1, attempts=attempts, backoff=0.001)
    return DeliveryPolicy(
        connections=1, attempts=attempts, backoff=0.001, max_connect_failures=threshold
    )


@pytest.mark.parametrize("threshold, failures", [(2, 1), (3, 2), (None, 4)])
def test_one_failed_connect_fewer_than_the_threshold_lets_the_message_through(
    threshold: int | None, failures: int
) -> None:
    dead = closed_port()
    with SmtpServer() as server:
        transport = ScriptedTransport([dead] * failures + [server.port])
        recorded = run([message(1)], transport, policy(threshold, attempts=failures + 1))
    outcome = recorded.outcomes["reader1@example.org"]
    assert outcome.status is DeliveryStatus.SENT
    assert outcome.attempts == failures + 1
    assert transport.connects == failures + 1
    assert [m.rcpt_tos for m in server.messages] == [("reader1@example.org",)]


@pytest.mark.parametrize("threshold, failures", [(2, 2), (3, 3), (None, 5)])
def test_failed_connects_in_a_row_reaching_the_threshold_stop_the_run(
    threshold: int | None, failures: int
) -> None:
    dead = closed_port()
    with SmtpServer() as server:
        transport = ScriptedTransport([dead] * failures + [server.port])
        recorded = Recorded()
        with pytest.raises(ServerRefusedError) as raised:
            run([message(i) for i in range(3)], transport, policy(threshold, 10), recorded)
    assert str(raised.value).startswith(f"{failures} connection attempts failed in a row; last:")
    assert "connection lost" in str(raised.value)  # the last failure's own words follow
    assert transport.connects == failures  # the server that would have answered is never tried
    assert recorded.outcomes == {} and server.messages == []


def test_the_first_failed_connect_of_a_run_does_not_stop_it() -> None:
    """With the settings a send runs on: one refused connect is a retry, not 'server down'."""
    dead = closed_port()
    with SmtpServer() as server:
        transport = ScriptedTransport([dead, server.port])
        recorded = run([message(i) for i in range(3)], transport, policy(None, attempts=3))
    assert {o.status for o in recorded.outcomes.values()} == {DeliveryStatus.SENT}
    assert len(server.messages) == 3


def test_a_successful_connect_resets_the_count_so_scattered_failures_never_stop_a_send() -> None:
    """Every message loses its connection once mid-DATA and meets one refused reconnect.

    Eight refused connects in all against a threshold of two: the run must go on, because a
    working connect sits between every two failures.
    """
    dead = closed_port()
    tries: dict[str, int] = {}

    def drop_first_data(phase: str, address: str) -> str | None:
        if phase != "data":
            return None
        tries[address] = tries.get(address, 0) + 1
        return DROP if tries[address] == 1 else None

    with SmtpServer() as server:
        server.handler.behaviour = drop_first_data
        # connect 1 works; then, per message: DATA dropped, reconnect refused, reconnect works.
        transport = ScriptedTransport([server.port] + [dead, server.port] * 8)
        recorded = run([message(i) for i in range(8)], transport, policy(2, attempts=3))
    assert transport.connects == 17
    assert {o.status for o in recorded.outcomes.values()} == {DeliveryStatus.SENT}
    assert {o.attempts for o in recorded.outcomes.values()} == {3}
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(recorded.outcomes)
    assert len(server.messages) == 8


def test_a_refused_connect_after_a_success_counts_as_the_first_of_a_new_row() -> None:
    """After a reset, exactly `threshold` fresh failures are needed to stop, not fewer."""
    dead = closed_port()
    tries: dict[str, int] = {}

    def drop_first_data(phase: str, address: str) -> str | None:
        if phase != "data":
            return None
        tries[address] = tries.get(address, 0) + 1
        return DROP if tries[address] == 1 else None

    with SmtpServer() as server:
        server.handler.behaviour = drop_first_data
        # connect 1 works; message 0 loses it, then two refused connects in a row (threshold 3
        # not reached), then a working one; message 1 loses it, then three refused: stop.
        script = [server.port, dead, dead, server.port, dead, dead, dead, server.port]
        transport = ScriptedTransport(script)
        recorded = Recorded()
        with pytest.raises(ServerRefusedError, match=r"^3 connection attempts failed in a row"):
            run([message(i) for i in range(2)], transport, policy(3, attempts=10), recorded)
    assert transport.connects == 7
    assert list(recorded.outcomes) == ["reader0@example.org"]
    assert recorded.outcomes["reader0@example.org"].attempts == 4
    assert [m.rcpt_tos[0] for m in server.messages] == ["reader0@example.org"]
