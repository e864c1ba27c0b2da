"""Shared fixtures, and the guard that keeps the suite independent of the calendar.

Time: tests run on their own clocks (`tests.support.clock`). Every test also runs with the
process's wall clock moved `WALL_CLOCK_SHIFT` into the future (time-machine), so code that
still reads the wall clock instead of its injected clock (a time bomb) fails today, not on the
day the calendar catches up with a date in a test. Subprocesses get the test's instant through
libfaketime (`tests.support.faketime`).

Database fixtures: `store_url` runs a test once on SQLite and once on PostgreSQL, each time on a
fresh, empty database; `store` is the store opened (and migrated) on it.

PostgreSQL is the local server (override with REE_TEST_PG_URL); each test gets its own schema,
selected through ``search_path`` in the URL and dropped afterwards, so tests never see each
other's rows and need no cleanup of their own. Without a server those tests are skipped with the
reason shown in the summary (pytest runs with ``-ra``).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine

from newsletter.store import SqlStore, open_store
from tests.support.web import Servers, WebServer

PG_URL = os.environ.get("REE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WALL_CLOCK_SHIFT = timedelta(days=1000, hours=5)


def pytest_configure(config: pytest.Config) -> None:
    """Make the suite runnable under `faketime` (how CI and a reviewer move the calendar).

    libfaketime 0.9.10 and Python 3.11 disagree in two places. With the monotonic clock faked,
    every timed lock wait (sem_clockwait, which the library does not intercept) sleeps until the
    faked deadline: a year. With it left real, time.sleep (clock_nanosleep to an absolute
    monotonic deadline) has the deadline shifted by the fake offset and fails with EINVAL.
    So: demand the real monotonic clock (`make test` exports it), and sleep by a timed wait.
    """
    if "faketime" not in os.environ.get("LD_PRELOAD", ""):
        return
    if os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") != "1":
        raise pytest.UsageError(
            "under faketime, set FAKETIME_DONT_FAKE_MONOTONIC=1 (`make test` does): with a faked "
            "monotonic clock every timed lock wait in Python 3.11 sleeps until the fake deadline"
        )
    setattr(time, "sleep", _timed_wait)  # noqa: B010 - mypy refuses assigning to a function


def _timed_wait(seconds: float) -> None:
    threading.Event().wait(seconds)


@pytest.fixture(autouse=True)
def wall_clock_far_away() -> Iterator[None]:
    """Move this process's wall clock ~3 years ahead for the test (see the module docstring)."""
    with time_machine.travel(datetime.now(UTC) + WALL_CLOCK_SHIFT, tick=True):
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file under tmp_path, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'subscribers' / 'subscribers.db'}"
        return
    yield from _postgresql_schema()


@pytest.fixture(scope="module")
def postgresql_url() -> Iterator[str]:
    """A throwaway PostgreSQL schema shared by a module's tests: what PostgreSQL alone does
    (Hypothesis runs many examples, so one schema serves them all)."""
    yield from _postgresql_schema()


def _postgresql_schema() -> Iterator[str]:
    """Create a unique schema, yield a URL whose search_path points at it, then drop it."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc.orig}")
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """The store on a fresh database, closed afterwards so its connections do not linger."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


# Web fixtures: the uvicorn + aiosmtpd harness (tests.support.web), one set of servers per module.


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture
def web(tmp_path: Path, servers: Servers, store_url: str) -> Iterator[WebServer]:
    """The app on the shared servers, once on SQLite and once on PostgreSQL."""
    with WebServer(tmp_path, servers, store_url=store_url) as server:
        yield server
