"""`active_ids` (asked every 32 readers of a send) runs on a pooled DBAPI connection through
`engine.raw_column`; SQLAlchemy's own execution of the same question is the reference.

On both stores: the same answer for any mix of statuses and any list of ids (none, unknown,
repeated, more than a page); a database error, reaching the database included, is a
StoreError, and a server's connection it happened on is not pooled again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import StoreError
from newsletter.models import SubscriberStatus
from newsletter.store import SqlStore
from newsletter.store.engine import file_engine, parse_url, raw_column
from newsletter.store.ledger import _ACTIVE
from newsletter.store.schema import subscribers
from tests.support.clock import T0
from tests.support.config import closed_port

STATUSES = list(SubscriberStatus)


def reference(store: SqlStore, ids: list[int]) -> set[int]:
    query = sa.select(subscribers.c.id).where(
        subscribers.c.id.in_(ids), subscribers.c.status == SubscriberStatus.ACTIVE.value
    )
    with store.engine.connect() as conn:
        return set(conn.scalars(query))


def readers(store: SqlStore, statuses: list[SubscriberStatus]) -> list[int]:
    ids = []
    for number, status in enumerate(statuses):
        subscriber = store.add_subscriber(
            f"reader{number}@example.org", status=status, source="test", now=T0
        )
        if subscriber.status is not status:
            store.set_status(subscriber.id, status, T0)
        ids.append(subscriber.id)
    return ids


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=12),
    picks=st.lists(st.integers(min_value=-2, max_value=14), max_size=40),
)
def test_the_answer_is_sqlalchemys_for_any_mix_and_any_list(
    store: SqlStore, statuses: list[SubscriberStatus], picks: list[int]
) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.delete(subscribers))
    ids = readers(store, statuses)
    # ids of readers, unknown ids (before, between and after them), repeats, any order
    asked = [ids[pick] if 0 <= pick < len(ids) else max(ids) + 100 + pick for pick in picks]
    found = store.active_ids(asked)
    assert found == reference(store, asked)
    wanted = {ids[i] for i, status in enumerate(statuses) if status is SubscriberStatus.ACTIVE}
    assert found == wanted & set(asked)


def test_more_than_a_page_and_none_at_all(store: SqlStore) -> None:
    statuses = [SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED]
    ids = readers(store, statuses * 40)
    assert store.active_ids(ids) == set(ids[::3]) == reference(store, ids)
    assert len(store.active_ids(ids)) == 40
    assert store.active_ids([]) == set() == reference(store, [])


def test_a_database_error_is_a_store_error_and_the_next_question_is_answered(
    store: SqlStore,
) -> None:
    ids = readers(store, [SubscriberStatus.ACTIVE, SubscriberStatus.PENDING])
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE subscribers RENAME TO subscribers_away"))
    try:
        with pytest.raises(StoreError, match=r"^the store failed: .*subscribers"):
            store.active_ids(ids)
    finally:
        with store.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE subscribers_away RENAME TO subscribers"))
    assert store.active_ids(ids) == {ids[0]}


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:{port}/test", "sqlite:///{missing}"],
    ids=["postgresql server down", "sqlite file missing (read-only)"],
)
def test_a_store_it_cannot_reach_is_a_store_error(url: str, tmp_path: Path) -> None:
    """Reaching the database is part of asking it: a server that is down (or restarting during
    a send) is one StoreError, which the run reports and stops on, not the driver's own."""
    parsed = parse_url(url.format(port=closed_port(), missing=tmp_path / "none.db"))
    engine = file_engine(parsed, read_only=True)
    try:
        with pytest.raises(StoreError, match=r"^the store failed: "):
            raw_column(engine, _ACTIVE, {"ids": [1, 2]})
    finally:
        engine.dispose()


def test_a_connection_the_server_drops_mid_question_is_not_pooled_again(
    store: SqlStore, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ends the connection between its checkout and the query: a StoreError, and
    the connection is thrown away, not rolled back (which would fail and log a traceback) and
    handed out again; the next question gets a new one and is answered."""
    if not store_url.startswith("postgresql"):
        pytest.skip("a server dropping a connection is a PostgreSQL case")
    ids = readers(store, [SubscriberStatus.ACTIVE])
    admin = sa.create_engine(store_url)
    used: list[Any] = []

    def on_checkout(dbapi: Any, record: Any, proxy: Any) -> None:
        used.append(dbapi)
        if len(used) == 1:  # the first question's connection dies under it
            with admin.begin() as conn:
                pid = dbapi.info.backend_pid
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    sa.event.listen(store.engine, "checkout", on_checkout)
    try:
        with caplog.at_level(logging.WARNING, logger="sqlalchemy"):
            with pytest.raises(StoreError, match=r"^the store failed: "):
                store.active_ids(ids)
            assert store.active_ids(ids) == {ids[0]}
    finally:
        admin.dispose()
    assert len(used) == 2 and used[1] is not used[0] and used[0].closed
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
