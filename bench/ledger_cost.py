"""What one ledger commit costs, by how many outcomes share it (the group-commit lever).

Run:  .venv/bin/python bench/ledger_cost.py [--rows 8000] [--store sqlite|postgresql]

A send records every reader's outcome through `LedgerSql` (store/ledger_sql.py), one commit per
group of outcomes; a commit is made when a worker is about to write its next message's data
(the duplicate bound), and takes every outcome handed over by then: with 4 connections about
2.4 a commit on SQLite (ledger_writer.py). This writes `--rows`
outcomes into a fresh store in groups of 1, 2, 4, 8 and 16 and prints the CPU time (this
process: Python, the driver and SQLite's own work) and the wall time per row. On PostgreSQL the
server's work and its durable commit show in the wall time only. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from send_bench import Store

from newsletter.models import DeliveryStatus, Digest, Outcome, SubscriberStatus
from newsletter.store import open_store
from newsletter.store.ledger_sql import LedgerSql

NOW = datetime(2026, 11, 28, 7, tzinfo=UTC)
GROUPS = (1, 2, 4, 8, 16)
DIGEST = Digest("REE Daily", "", "<p>issue</p>", "issue", ("a1",))


def outcome() -> Outcome:
    """As a relay's acceptance looks in the ledger: a reply line and a unique Message-ID."""
    message_id = f"<20261128.bench.{secrets.token_hex(10)}@ree-news.example.com>"
    return Outcome(DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 4Bench", message_id, 1)


async def write_all(session: LedgerSql, readers: list[int], group: int) -> tuple[float, float]:
    """CPU and wall seconds of writing every reader's outcome, `group` to a commit, one commit
    after another as a send's writer makes them (PostgreSQL's awaited on the event loop)."""
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, len(readers), group):
            done = session([(sid, outcome()) for sid in readers[start : start + group]], NOW)
            if done is not None:
                await done
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await session.aclose()


def measure(url: str, rows: int, group: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per row, `rows` outcomes written `group` to a commit."""
    store = open_store(url)
    try:
        readers = [
            store.add_subscriber(
                f"reader{n}@example.org",
                status=SubscriberStatus.ACTIVE,
                source="bench",
                now=NOW - timedelta(days=1),
            ).id
            for n in range(rows)
        ]
        issue = store.create_issue("REE Daily", date(2026, 11, 28), NOW, DIGEST, NOW)
        cpu, wall = asyncio.run(write_all(LedgerSql(store.engine, issue.id), readers, group))
        stored = store.outcome_counts(issue.id)
        if stored != {"sent": rows}:
            raise SystemExit(f"the ledger holds {stored}, not {rows} sent")
    finally:
        store.close()
    return cpu / rows * 1e6, wall / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000, help="outcomes per group size")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    print(f"store: {args.store}; {args.rows:,} outcomes per group size; microseconds per row")
    print(f"{'outcomes per commit':>20} {'CPU':>8} {'wall':>8}")
    for group in GROUPS:
        with tempfile.TemporaryDirectory() as folder:
            store = Store(args.store, Path(folder))
            try:
                cpu, wall = measure(store.url, args.rows, group)
            finally:
                store.drop()
        print(f"{group:>20} {cpu:>8.1f} {wall:>8.1f}")


if __name__ == "__main__":
    main()
