"""The ledger write on the hot path: the same upsert, minus SQLAlchemy's per-call overhead.

`SqlStore.record_outcomes` costs ~130 us per message through SQLAlchemy's execution machinery,
more than building and sending the message (bench/send_bench.py, cProfile). During a send the
statement never changes, so it is compiled once with the store's own dialect and run on one
DBAPI connection held for the send; values go through the column types' own bind processors,
so the stored bytes are exactly what the SQLAlchemy path writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from .models import Outcome
from .store_engine import upsert_statement
from .store_ledger import LEDGER_KEY, NOT_SENT, ledger_values
from .store_schema import deliveries


class LedgerSql:
    """Writes ledger rows for one issue on a dedicated connection; use as a context manager."""

    def __init__(self, engine: Engine, issue_id: int) -> None:
        self.engine = engine
        self.issue_id = issue_id
        self.dialect = engine.dialect
        columns = tuple(c.name for c in deliveries.columns)
        compiled = upsert_statement(self.dialect.name, deliveries, columns, LEDGER_KEY, NOT_SENT)
        self.compiled = compiled.compile(dialect=self.dialect)
        self.processors: dict[str, Callable[[Any], Any] | None] = {
            c.name: c.type.bind_processor(self.dialect) for c in deliveries.columns
        }
        self.raw = engine.raw_connection()

    def close(self) -> None:
        self.raw.close()

    def _params(self, row: dict[str, Any]) -> Any:
        processed = {}
        for name, value in row.items():
            processor = self.processors[name]
            processed[name] = processor(value) if processor else value
        params = self.compiled.construct_params(processed)
        if self.compiled.positiontup is not None:
            return [params[name] for name in self.compiled.positiontup]
        return params

    def write(self, rows: Sequence[tuple[int, Outcome]], now: datetime) -> None:
        values = [self._params(ledger_values(self.issue_id, sid, o, now)) for sid, o in rows]
        cursor = self.raw.cursor()
        try:
            if self.dialect.name == "sqlite":  # autocommit connection: our own write lock
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(self.compiled.string, values)
            if self.dialect.name == "sqlite":
                cursor.execute("COMMIT")
            else:
                self.raw.commit()
        except BaseException:
            self.raw.rollback()
            raise
        finally:
            cursor.close()


@contextmanager
def ledger_sql(engine: Engine, issue_id: int) -> Iterator[LedgerSql]:
    ledger = LedgerSql(engine, issue_id)
    try:
        yield ledger
    finally:
        ledger.close()
