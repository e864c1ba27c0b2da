"""The benchmark scripts still run: a bench that rots silently reports nothing (send_bench's
fill step once named a column where SQL wants a value, and every run died before sending)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from send_bench import Store, fill_store, write_config  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_send_bench_fills_a_store_the_engine_reads(tmp_path: Path, kind: str) -> None:
    store = Store(kind, tmp_path)
    try:
        config = write_config(tmp_path, 2525, 4, store.url, dkim=False)
        fill_store(config, store, 25)
        rows = store.execute("SELECT status, count(*), count(DISTINCT mailbox) FROM subscribers"
                             " GROUP BY status")  # fmt: skip
        assert rows == [("active", 25, 25)]
    finally:
        store.drop()


def test_the_import_bench_runs_and_prints_the_commands_tally() -> None:
    command = [sys.executable, str(ROOT / "bench" / "import_bench.py"), "--lines", "300",
               "--store", "sqlite"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "added=294, updated=0, unchanged=3, refused=3, suppressed=0" in lines[1]
    assert "added=0, updated=0, unchanged=297, refused=3, suppressed=0" in lines[2]


def test_the_limiter_bench_fills_the_limiter_to_its_bound() -> None:
    command = [sys.executable, str(ROOT / "bench" / "limiter_memory.py"), "--clients", "500"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("clients: 500 (bound 500; ")
    assert "memory held: " in done.stdout


def test_the_ledger_bench_writes_every_outcome_for_each_group_size() -> None:
    command = [sys.executable, str(ROOT / "bench" / "ledger_cost.py"), "--rows", "40"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr  # it exits 1 when the ledger lacks a row
    lines = done.stdout.splitlines()
    assert lines[0] == "store: sqlite; 40 outcomes per group size; microseconds per row"
    groups = [line.split() for line in lines[2:]]
    assert [row[0] for row in groups] == ["1", "2", "4", "8", "16"]
    assert all(float(cpu) > 0 and float(wall) > 0 for _, cpu, wall in groups)
