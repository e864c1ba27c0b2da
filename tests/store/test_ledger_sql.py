"""The ledger's hot-path write builds each row's parameters itself; SQLAlchemy is the reference.

For every kind of outcome, on both stores: the parameters are exactly those SQLAlchemy's
compiled statement makes from the column types' bind processors, and the rows it writes read
back as the SQLAlchemy path's do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.models import DeliveryStatus, Outcome
from newsletter.store import SqlStore
from newsletter.store.ledger_sql import LedgerSql, ledger_values
from newsletter.store.schema import deliveries
from tests.support.clock import T0
from tests.support.lease_harness import issue_with_readers

OUTCOMES = [
    Outcome(DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 4Xyz", "<a@ree-news.example.com>", 1),
    Outcome(DeliveryStatus.DEFERRED, "451 4.7.1 try later", "<b@x>", 3, T0 + timedelta(hours=1)),
    Outcome(DeliveryStatus.FAILED, "550 5.1.1 no such user", "", 1, code=550),
    Outcome(DeliveryStatus.SKIPPED, "no longer active at send time", attempts=0),
]


def reference(session: LedgerSql, row: dict[str, Any]) -> Any:
    """What SQLAlchemy's own machinery makes of the row: bind processors, then the statement's
    construct_params, in the driver's order."""
    processed = {}
    for column in deliveries.columns:
        processor = column.type.bind_processor(session.dialect)
        value = row[column.name]
        processed[column.name] = processor(value) if processor else value
    params = session.compiled.construct_params(processed)
    if session.compiled.positiontup is not None:
        return [params[name] for name in session.compiled.positiontup]
    return params


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: o.status.value)
def test_a_rows_parameters_are_sqlalchemys(store: SqlStore, outcome: Outcome) -> None:
    issue_id, ids = issue_with_readers(store, 1)
    session = LedgerSql(store.engine, issue_id)
    try:
        row = ledger_values(issue_id, ids[0], outcome, T0)
        assert session._params(row) == reference(session, row)
    finally:
        session.close()


def test_rows_written_on_the_hot_path_read_back_as_the_sqlalchemy_paths(store: SqlStore) -> None:
    issue_id, ids = issue_with_readers(store, 2 * len(OUTCOMES))
    hot, plain = ids[: len(OUTCOMES)], ids[len(OUTCOMES) :]
    session = LedgerSql(store.engine, issue_id)
    try:
        session(list(zip(hot, OUTCOMES, strict=True)), T0)
    finally:
        session.close()
    store.record_outcomes(issue_id, list(zip(plain, OUTCOMES, strict=True)), T0)
    counts = store.outcome_counts(issue_id)
    assert counts == {o.status.value: 2 for o in OUTCOMES}
    by_id = {
        r.subscriber_id: (
            r.status,
            r.detail,
            r.message_id,
            r.attempts,
            r.next_attempt,
            r.updated_at,
        )
        for r in ledger_rows(store, issue_id)
    }
    assert [by_id[i] for i in hot] == [by_id[i] for i in plain]


def ledger_rows(store: SqlStore, issue_id: int) -> list[Any]:
    query = sa.select(deliveries).where(deliveries.c.issue_id == issue_id)
    with store.engine.connect() as conn:
        return list(conn.execute(query))
