"""The per-client sign-up limit counted in Redis, shared by every process that names it.

With `newsletter serve --workers N`, or the app on several hosts, each process counting in its
own memory lets a client post N times the limit (once per process it happens to reach). With
`[web] redis_url` set, every process counts in one Redis with `limits`' moving window: the
same rule as `SlidingWindowLimiter` (at most `limit` posts in any `window`, a refused post not
counted, Retry-After when the oldest post in the window leaves it), kept as a list of post
times per client key under `<redis_prefix>:LIMITER/<key>/...`, which Redis expires with the
window.

Redis is a help, never a gate: when it does not answer (down, unreachable, refusing) the form
keeps working on the per-process limiter, one warning says so, and Redis is tried again after
`RETRY_REDIS`; posts counted in memory meanwhile are not carried over, so a client may get
up to one more window of posts across an outage (the per-mailbox limits still hold).

Time: `limits` stamps each post with its own `time.time()` (the wall clock of the process that
posts) and reads the window against it, not against the app's injected clock; that is a
boundary we do not own. In production both are the wall clock; the injected clock still
decides when Redis is tried again and drives the per-process fallback.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timedelta

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from newsletter.web.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)
RETRY_REDIS = timedelta(seconds=30)  # how long a process counts alone after Redis failed
SOCKET_TIMEOUT = 0.5  # seconds; Redis on the LAN answers in well under a millisecond


class RedisLimiter:
    """A `ClientLimit` in Redis, with `fallback` (per process) while Redis does not answer."""

    def __init__(
        self,
        url: str,
        prefix: str,
        limit: int,
        window: timedelta,
        fallback: SlidingWindowLimiter,
    ) -> None:
        if limit < 1 or window.total_seconds() < 1:
            raise ValueError("the limit must be at least 1 in a window of at least a second")
        self.storage = RedisStorage(
            url,
            key_prefix=prefix,
            wrap_exceptions=True,
            socket_connect_timeout=SOCKET_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
        )
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.item = RateLimitItemPerSecond(limit, int(window.total_seconds()))
        self.fallback = fallback
        self._retry_at: datetime | None = None  # while set and not reached: count alone
        self._outage = False
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True while posts are counted in Redis (False: this process counts alone)."""
        return not self._outage

    def admit(self, key: str, now: datetime) -> int:
        retry_at = self._retry_at
        if retry_at is not None and now < retry_at:
            return self.fallback.admit(key, now)
        try:
            if self.strategy.hit(self.item, key):
                wait = 0
            else:
                reset = self.strategy.get_window_stats(self.item, key).reset_time
                # The reset is on limits' clock (see the module docstring): read it against it.
                wait = max(1, math.ceil(reset - time.time()))
        except StorageError as exc:
            self._failed(exc, now)
            return self.fallback.admit(key, now)
        self._answered()
        return wait

    def _answered(self) -> None:
        if not self._outage:
            return
        with self._lock:
            was_out, self._outage, self._retry_at = self._outage, False, None
        if was_out:
            log.info("sign-up limit: Redis answers again; counting shared")

    def _failed(self, exc: StorageError, now: datetime) -> None:
        with self._lock:
            first, self._outage, self._retry_at = not self._outage, True, now + RETRY_REDIS
        if first:  # once per outage, however many posts meet it and however long it lasts
            log.warning(
                "sign-up limit: Redis did not answer (%s); each process counts alone until it "
                "does (tried again every %d s)",
                exc.storage_error,
                RETRY_REDIS.total_seconds(),
            )
