"""Shared fixtures.

Database fixtures: `store_url` runs a test once on SQLite and once on PostgreSQL, each time on a
fresh, empty database; `store` is the store opened (and migrated) on it.

PostgreSQL is the local server (override with REE_TEST_PG_URL); each test gets its own schema,
selected through ``search_path`` in the URL and dropped afterwards, so tests never see each
other's rows and need no cleanup of their own. Without a server those tests are skipped with the
reason shown in the summary (pytest runs with ``-ra``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.store import SqlStore, open_store
from tests.test_web import Servers, WebServer

PG_URL = os.environ.get("REE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file under tmp_path, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'subscribers' / 'subscribers.db'}"
        return
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


# Web fixtures: the uvicorn + aiosmtpd harness of test_web, one set of servers per module.


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture
def web(tmp_path: Path, servers: Servers) -> Iterator[WebServer]:
    with WebServer(tmp_path, servers) as server:
        yield server
