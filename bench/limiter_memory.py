"""How much memory the sign-up form's per-IP limiter takes when it is full.

Fills one `SlidingWindowLimiter` with `--clients` distinct clients (each posting `--posts` times
within the window, IPv4 and IPv6 /64 keys as `client_key` makes them), then one more client
past the bound, and prints the limiter's size, the memory it holds (tracemalloc: what the keys
and the fill allocated and the limiter still holds) and the time per post. The README quotes
this figure for `[web].ip_limit_clients`.

    .venv/bin/python bench/limiter_memory.py [--clients 100000] [--posts 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from newsletter.web.ratelimit import SlidingWindowLimiter, client_key


def client(n: int) -> str:
    """Half IPv4, half IPv6 (each its own /64)."""
    if n % 2:
        return client_key(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    return client_key(f"2001:db8:{n >> 16 & 0xFFFF:x}:{n & 0xFFFF:x}::1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=3)
    args = parser.parse_args()
    now = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keys = [client(n) for n in range(args.clients)]  # the key strings the limiter keeps
    before += sys.getsizeof(keys)  # the list itself is the bench's, not the limiter's
    limiter = SlidingWindowLimiter(5, timedelta(hours=1), max_keys=args.clients)
    started = time.perf_counter()
    for post in range(args.posts):
        at = now + timedelta(seconds=post)
        for key in keys:
            limiter.hit(key, at)
    elapsed = time.perf_counter() - started
    held = tracemalloc.get_traced_memory()[0] - before
    limiter.hit(client_key("192.0.2.1"), now + timedelta(seconds=args.posts))
    tracemalloc.stop()
    posts = args.clients * args.posts
    print(f"clients: {len(limiter):,} (bound {args.clients:,}; one more forgot the quietest: "
          f"{limiter.forgotten_active} forgotten while active)")  # fmt: skip
    print(f"memory held: {held / 1e6:.1f} MB, {held / args.clients:.0f} bytes a client "
          f"with {args.posts} posts each")  # fmt: skip
    print(f"time: {elapsed / posts * 1e6:.2f} us a post")


if __name__ == "__main__":
    main()
