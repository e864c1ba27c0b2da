"""A reader's choices: how often they get mail (a mixin of SqlStore)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.errors import StoreError
from newsletter.models import Frequency
from newsletter.store.schema import subscribers


class PreferencesMixin:
    engine: Engine

    def _write(self, operation: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def frequency_of(self, subscriber_id: int) -> Frequency | None:
        query = sa.select(subscribers.c.frequency).where(subscribers.c.id == subscriber_id)
        with self.engine.connect() as conn:
            found = conn.scalar(query)
        return None if found is None else Frequency(found)

    def set_frequency(self, subscriber_id: int, frequency: Frequency, now: datetime) -> None:
        """Daily or weekly from the next issue on; an issue already going out keeps its readers."""
        query = (
            sa.update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(frequency=frequency.value, updated_at=now)
        )
        with self._write("set_frequency") as conn:
            if conn.execute(query).rowcount == 0:
                raise StoreError(f"no subscriber with id {subscriber_id}")
