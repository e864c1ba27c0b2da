"""Importing a list: every line judged by the rules of one `add --active`, at database speed.

Lines are read as a stream and handed to the store in chunks (`CHUNK` lines, one transaction
each), so a million-line file takes the memory of one chunk and 100,000 addresses a few
seconds instead of ten minutes. A line is refused with the validator's reason exactly as the
web form would refuse it (`Subscriptions.normalize`, which knows whether the relay takes
SMTPUTF8); what the store does with the rest is `SqlStore.import_subscribers`. Verdicts come
back in the file's order, one per line, so the operator's report reads like the file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TypeVar

from newsletter.addresses import mailbox_key
from newsletter.errors import AddressError
from newsletter.models import ImportResult, ImportRow, ImportVerdict, SubscriberStatus
from newsletter.subscriptions import Subscriptions

CHUNK = 1000  # lines a transaction: ~1,000 bound values per hash key in its largest statement
Key = TypeVar("Key")


def import_addresses(
    service: Subscriptions,
    lines: Iterable[tuple[Key, str, str]],
    *,
    status: SubscriberStatus,
    source: str,
    chunk: int = CHUNK,
) -> Iterator[tuple[Key, ImportVerdict]]:
    """Import `(key, address, problem)` lines; yield each key with its verdict, in order.

    A line with a `problem` (it could not be read) is refused with it. Each chunk is committed
    before its verdicts are yielded, so an import stopped part-way has kept what it reported.
    """
    if chunk < 1:
        raise ValueError("a chunk holds at least one line")
    rest = iter(lines)
    while batch := list(itertools.islice(rest, chunk)):
        yield from _import_chunk(service, batch, status, source)


def _import_chunk(
    service: Subscriptions,
    batch: list[tuple[Key, str, str]],
    status: SubscriberStatus,
    source: str,
) -> Iterator[tuple[Key, ImportVerdict]]:
    verdicts: list[ImportVerdict | None] = []
    rows: list[ImportRow] = []
    for _, raw, problem in batch:
        verdict, row = _read(service, raw, problem)
        verdicts.append(verdict)
        if row is not None:
            rows.append(row)
    stored = iter(
        service.store.import_subscribers(rows, status=status, source=source, now=service.clock())
        if rows
        else []
    )
    for (key, _, _), verdict in zip(batch, verdicts, strict=True):
        yield key, verdict if verdict is not None else next(stored)


def _read(
    service: Subscriptions, raw: str, problem: str
) -> tuple[ImportVerdict | None, ImportRow | None]:
    """A refusal, or the row the store is to judge."""
    if problem:
        return ImportVerdict(ImportResult.REFUSED, problem), None
    try:
        email = service.normalize(raw)
    except AddressError as exc:
        return ImportVerdict(ImportResult.REFUSED, exc.reason), None
    return None, ImportRow(email, mailbox_key(email), tuple(service.address_hashes(email)))
