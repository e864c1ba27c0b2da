"""How fast `newsletter subscribers import` takes a list, and in how much memory.

Writes a list of N lines (1% refused, 1% repeats of an earlier line, the rest new addresses),
then runs the real command on a fresh store twice: into an empty list, and the same file again
(every line already known). Each run is its own process; its wall time and peak resident
memory (from wait4) are printed with the command's own tally.

    .venv/bin/python bench/import_bench.py [--lines 100000] [--store sqlite|postgresql|both]

Constant memory shows as the same peak at 100,000 and at 1,000,000 lines (`--lines 1000000`).
PostgreSQL is 127.0.0.1:5432 (REE_TEST_PG_URL), a throwaway schema dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from send_bench import Store, write_config


def write_list(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email\n")
        for n in range(1, lines + 1):
            if n % 100 == 0:
                out.write(f"not-an-address-{n}\n")
            elif n % 50 == 0:
                out.write(f"Reader{n - 25}@Example.org\n")
            else:
                out.write(f"reader{n}@example.org\n")


def run_import(config: Path, source: Path) -> tuple[float, float, str]:
    """Seconds, peak RSS in MB, and the tally line of one import."""
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench"}
    command = [sys.executable, "-m", "newsletter", "--config", str(config)]
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, "subscribers", "import", "--active", str(source)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    tally = child.stdout.read().strip()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the import failed (exit {child.returncode}): {tally}")
    return seconds, usage.ru_maxrss / 1024, tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "list.csv"
        write_list(source, args.lines)
        print(f"{args.lines:,} lines ({source.stat().st_size / 1e6:.1f} MB)")
        for kind in kinds:
            store = Store(kind, folder)
            try:
                config = write_config(folder, 2525, 4, store.url, dkim=False)
                for label in ("empty list", "again"):
                    seconds, peak, tally = run_import(config, source)
                    rate = args.lines / seconds
                    print(
                        f"{kind:<10} {label:<10} {seconds:6.2f} s  {rate:9,.0f} lines/s  "
                        f"peak {peak:5.0f} MB  {tally}"
                    )
            finally:
                store.drop()
                if store.path.exists():
                    store.path.unlink()


if __name__ == "__main__":
    main()
