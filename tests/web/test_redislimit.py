"""The per-IP sign-up limit in Redis (`web/redislimit.py`), against the real local Redis.

`limits` stamps each post with `time.time()` itself, a clock we do not own, so these tests
move that clock with time-machine (in whole seconds: Redis hands stamps back at 14 digits)
while the app's injected clock (FakeClock) drives the fallback and the retry pause.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from newsletter.web.ratelimit import SlidingWindowLimiter, client_key
from newsletter.web.redislimit import RETRY_REDIS, RedisLimiter
from tests.support.clock import T0, FakeClock
from tests.support.config import closed_port
from tests.support.redis import REDIS_URL, keys, own_prefix, redis_server
from tests.support.web import Servers, WebServer

HOUR = timedelta(hours=1)
WALL = datetime(2029, 8, 1, 12, 0)  # limits' clock in these tests (whole seconds)


@pytest.fixture
def prefix() -> Iterator[str]:
    with own_prefix() as own:
        yield own


def limiter(prefix: str, limit: int, url: str = REDIS_URL) -> RedisLimiter:
    return RedisLimiter(url, prefix, limit, HOUR, SlidingWindowLimiter(limit, HOUR))


def test_redis_admits_the_limit_in_any_hour_and_says_when_the_oldest_post_leaves(
    prefix: str,
) -> None:
    limit = limiter(prefix, 3)
    with time_machine.travel(WALL, tick=False) as wall:
        for minutes in (0, 10, 20):
            wall.move_to(WALL + timedelta(minutes=minutes))
            assert limit.admit("192.0.2.7", T0) == 0
        wall.move_to(WALL + timedelta(minutes=30))
        assert limit.admit("192.0.2.7", T0) == 30 * 60  # the post of minute 0 leaves at 60
        assert limit.admit("192.0.2.7", T0) == 30 * 60  # a refused post is not counted
        assert limit.admit("192.0.2.8", T0) == 0  # another client has its own count
        wall.move_to(WALL + timedelta(minutes=60, seconds=1))
        assert limit.admit("192.0.2.7", T0) == 0
        assert limit.admit("192.0.2.7", T0) == 10 * 60 - 1  # now the post of minute 10
    assert limit.shared
    assert keys(prefix) == [
        f"{prefix}:LIMITER/192.0.2.7/3/3600/second",
        f"{prefix}:LIMITER/192.0.2.8/3/3600/second",
    ]


def test_limiters_on_one_redis_share_one_count_and_another_prefix_keeps_apart(
    prefix: str,
) -> None:
    with own_prefix() as other_prefix, time_machine.travel(WALL, tick=False):
        one, two, other = limiter(prefix, 3), limiter(prefix, 3), limiter(other_prefix, 3)
        assert [one.admit("198.51.100.1", T0), two.admit("198.51.100.1", T0)] == [0, 0]
        assert one.admit("198.51.100.1", T0) == 0
        assert two.admit("198.51.100.1", T0) == 3600  # the third post was made on `one`
        assert other.admit("198.51.100.1", T0) == 0


def test_ipv6_clients_count_per_64_in_redis(prefix: str) -> None:
    limit = limiter(prefix, 2)
    with time_machine.travel(WALL, tick=False):
        assert limit.admit(client_key("2001:db8:1:2:aaaa::1"), T0) == 0
        assert limit.admit(client_key("2001:db8:1:2:bbbb::9"), T0) == 0
        assert limit.admit(client_key("2001:db8:1:2::77"), T0) == 3600  # same /64: refused
        assert limit.admit(client_key("2001:db8:1:3::1"), T0) == 0  # the next /64 is apart
        assert limit.admit(client_key("::ffff:192.0.2.7"), T0) == 0
        assert limit.admit(client_key("192.0.2.7"), T0) == 0  # IPv4-mapped is the IPv4 client
        assert limit.admit(client_key("192.0.2.7"), T0) == 3600
    assert f"{prefix}:LIMITER/2001:db8:1:2::/64/2/3600/second" in keys(prefix)


def test_a_dead_redis_leaves_the_limit_to_this_process_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    limit = limiter("unused", 2, url=f"redis://127.0.0.1:{closed_port()}/0")
    answers = []
    with caplog.at_level(logging.INFO, logger="newsletter.web.redislimit"):
        for _ in range(6):  # a minute apart: past each pause, so Redis is asked every time
            answers.append(limit.admit("192.0.2.7", clock()))
            clock.advance(minutes=1)
    assert answers == [0, 0, 58 * 60, 57 * 60, 56 * 60, 55 * 60]  # the process's own hour
    assert not limit.shared
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis did not answer" in warnings[0].getMessage()


@pytest.mark.slow  # starts a redis-server of its own
def test_redis_is_asked_again_after_the_pause_and_then_counts_shared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, clock = closed_port(), FakeClock()
    limit = limiter("back", 5, url=f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.INFO, logger="newsletter.web.redislimit"):
        assert limit.admit("192.0.2.7", clock()) == 0  # Redis dead: counted in memory
        with redis_server(port) as url:
            clock.advance(RETRY_REDIS - timedelta(seconds=1))
            assert limit.admit("192.0.2.7", clock()) == 0
            assert keys("back", url) == []  # within the pause Redis is not asked
            clock.advance(seconds=1)
            assert limit.admit("192.0.2.7", clock()) == 0
            assert keys("back", url) == ["back:LIMITER/192.0.2.7/5/3600/second"]
            assert limit.shared
    assert "Redis answers again" in caplog.text


def test_the_form_answers_429_from_the_redis_count_with_its_retry_after(
    tmp_path: Path, servers: Servers, prefix: str
) -> None:
    with (
        WebServer(
            tmp_path, servers, redis_url=REDIS_URL, redis_prefix=prefix, ip_limit_per_hour=2
        ) as web,
        time_machine.travel(WALL) as wall,
    ):
        web.app.state.signups.pace = 0.002
        assert web.sign_up("a@example.org", client_ip="203.0.113.5").status_code == 200
        wall.shift(timedelta(minutes=15))
        assert web.sign_up("b@example.org", client_ip="203.0.113.5").status_code == 200
        wall.shift(timedelta(minutes=5))
        refused = web.sign_up("c@example.org", client_ip="203.0.113.5")
        web.idle()
    assert refused.status_code == 429
    assert 40 * 60 - 2 <= int(refused.headers["retry-after"]) <= 40 * 60  # limits' clock ticks
    assert keys(prefix) == [f"{prefix}:LIMITER/203.0.113.5/2/3600/second"]
    assert sorted(m.rcpt_tos for m in web.smtp.messages) == [("a@example.org",), ("b@example.org",)]
