"""Per-client limits on the sign-up form, kept in memory.

Two limits guard the form (email standards I.46) and they live in different places on purpose:
- Per address (confirmation mails a day, minimum gap) protects a third party's inbox, so it must
  hold across restarts and processes: it is counted from the consent records in the store.
- Per client (form posts an hour) keeps one noisy client from making us send, and is counted
  here, per process. A restart forgets it; that costs at most one more window of posts.

IPv6 clients are counted per /64: one subscriber line usually gets a whole /64, and counting
single addresses would let a bot rotate through it.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import deque
from datetime import datetime, timedelta

MAX_CLIENTS = 100_000


def client_key(host: str | None) -> str:
    """The key a client is counted under: its IPv4 address or its IPv6 /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address)


class SlidingWindowLimiter:
    """At most `limit` hits per key in any `window`; thread-safe, bounded in memory.

    When `max_keys` clients are tracked and none has gone quiet, a new client is refused rather
    than letting the table grow: under a distributed flood failing closed protects the sender's
    reputation, and the per-address limits still protect every inbox.
    """

    def __init__(self, limit: int, window: timedelta, max_keys: int = MAX_CLIENTS) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: datetime) -> bool:
        """Count one attempt; False (and not counted) when the key is over its limit."""
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys and not self._prune(now):
                    return False
                hits = self._hits[key] = deque()
            self._expire(hits, now)
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True

    def retry_after(self, key: str, now: datetime) -> int:
        """Seconds until the key may try again (0 if it may now), for the Retry-After header."""
        with self._lock:
            hits = self._hits.get(key)
            if not hits or len(hits) < self.limit:
                return 0
            wait = hits[0] + self.window - now
        return max(1, math.ceil(wait.total_seconds()))

    def _expire(self, hits: deque[datetime], now: datetime) -> None:
        while hits and hits[0] <= now - self.window:
            hits.popleft()

    def _prune(self, now: datetime) -> bool:
        """Forget clients with no hit in the window; True if that made room."""
        for key in [
            k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window
        ]:
            del self._hits[key]
        return len(self._hits) < self.max_keys
