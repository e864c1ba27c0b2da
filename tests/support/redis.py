"""Redis for tests: the local server (override with REE_TEST_REDIS_URL), one key prefix per test,
and a throwaway `redis-server` on a port of the test's choosing (Redis that comes back).

Each test names its keys with its own prefix and deletes them afterwards, so tests never see
each other's counts and the shared server is left as it was found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

REDIS_URL = os.environ.get("REE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def client(url: str = REDIS_URL) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


@contextmanager
def own_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards. Skips without Redis."""
    server = client()
    try:
        server.ping()
    except redis.RedisError as exc:
        server.close()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        stale = list(server.scan_iter(f"{prefix}:*"))
        if stale:
            server.delete(*stale)
        server.close()


def keys(prefix: str, url: str = REDIS_URL) -> list[str]:
    """The keys under a prefix, as text."""
    server = client(url)
    try:
        return sorted(key.decode() for key in server.scan_iter(f"{prefix}:*"))
    finally:
        server.close()


@contextmanager
def redis_server(port: int) -> Iterator[str]:
    """A `redis-server` of our own on 127.0.0.1:port, keeping nothing on disk; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    # Not under libfaketime (CI's second pass): a faked clock stalls redis-server's event loop,
    # as it stalls Chromium (tests/support/browser.py); Redis is a boundary we do not own.
    env = {
        k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")
    }
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client(url).ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
