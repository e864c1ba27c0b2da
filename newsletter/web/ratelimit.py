"""Per-client limits on the sign-up form, kept in memory (or in Redis: `web/redislimit.py`).

Two limits guard the form against list-bombing (Spamhaus asks for rate limits and confirmed
opt-in) and they live in different places on purpose:
- Per mailbox (confirmation mails a day, minimum gap) protects a third party's inbox, so it must
  hold across restarts and processes: it is counted from the consent records in the store.
- Per client (sign-ups an hour) keeps one noisy client from making us send, and is counted
  here, per process (or, with `[web] redis_url`, in Redis, shared by every process). A restart
  forgets it; that costs at most one more window of posts. Only posts that make work count: an
  address refused as invalid sends nothing and costs nothing.

IPv6 clients are counted per /64: one subscriber line usually gets a whole /64, and counting
single addresses would let a bot rotate through it.

Memory is bounded by forgetting, never by refusing: when `max_keys` clients are tracked, the
one whose last post is oldest is dropped to make room. A flood of fresh addresses (two IPv6
/48s hold 130,000 /64s) then only makes old, quiet clients forgettable, which costs nothing; if
it pushes out clients still inside their window, those may post again, and the per-mailbox
limits still protect every inbox. Refusing new clients instead would let one such flood lock
every new reader out for an hour.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from array import array
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Protocol

MAX_CLIENTS = 100_000


class ClientLimit(Protocol):
    """What the sign-up form asks of a per-client limit; may block (it runs in a thread)."""

    def admit(self, key: str, now: datetime) -> int:
        """Count one post: 0 if it is allowed, else the Retry-After in seconds (not counted)."""
        ...


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

    Each key keeps the times of its hits in the window (an array of floats, ~0.2 KB at 20) and
    its place in a least-recently-hit order, so making room drops the quietest key first.
    """

    def __init__(self, limit: int, window: timedelta, max_keys: int = MAX_CLIENTS) -> None:
        if limit < 1 or max_keys < 1:
            raise ValueError("limit and max_keys must be at least 1")
        self.limit = limit
        self.window = window.total_seconds()
        self.max_keys = max_keys
        self.forgotten_active = 0  # keys dropped while still inside their window
        self._hits: OrderedDict[str, array[float]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, key: str, now: datetime) -> int:
        return 0 if self.hit(key, now) else self.retry_after(key, now)

    def hit(self, key: str, now: datetime) -> bool:
        """Count one attempt; False (and not counted) when the key is over its limit."""
        at = now.timestamp()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                self._make_room(at)
                hits = self._hits[key] = array("d")
            else:
                self._hits.move_to_end(key)
            _expire(hits, at - self.window)
            if len(hits) >= self.limit:
                return False
            hits.append(at)
            return True

    def retry_after(self, key: str, now: datetime) -> int:
        """Whole seconds until the key may post again (0 if it may now): the Retry-After."""
        at = now.timestamp()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                return 0
            _expire(hits, at - self.window)
            if len(hits) < self.limit:
                return 0
            wait = hits[len(hits) - self.limit] + self.window - at
        return max(1, math.ceil(wait))

    def __len__(self) -> int:
        return len(self._hits)

    def _make_room(self, at: float) -> None:
        """Drop the least recently seen keys until one more fits."""
        while len(self._hits) >= self.max_keys:
            _, hits = self._hits.popitem(last=False)
            if hits and hits[-1] > at - self.window:
                self.forgotten_active += 1


def _expire(hits: array[float], cutoff: float) -> None:
    """Drop the hits at or before `cutoff` (they are in time order)."""
    stale = 0
    while stale < len(hits) and hits[stale] <= cutoff:
        stale += 1
    if stale:
        del hits[:stale]
