"""Throughput of a real `newsletter send` against Postfix's smtp-source, into one smtp-sink.

Run:  .venv/bin/python bench/send_bench.py [--subscribers 20000] [--connections 4]
          [--processes N] [--dkim] [--store sqlite|postgresql] [--reports] [--skip-source] [--cold]
          [--profile FILE]

It starts `smtp-sink` on 127.0.0.1 (installing Debian's postfix package if it is missing and we
are root; otherwise it falls back to an aiosmtpd sink, whose own speed then caps the figures),
fills a fresh store (a SQLite file, or a throwaway schema on the local PostgreSQL) with N active
subscribers, runs `newsletter send [--processes N]` of the bundled sample digest into the sink
(ledger on; with --dkim every message is signed with a fresh RSA-2048 key), then pushes the same
number of messages of the same size with `smtp-source` into the same sink (as many sessions as
one process's connections; with several processes a second run opens as many as all of them
together), and prints both rates, their ratio, CPU time per message, the peak memory of the
largest process and the time to the first message. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the engine beside this script, not whichever one is installed

from newsletter.models import new_public_id  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
ISSUE_DATE = "2026-11-28"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_postfix() -> bool:
    if Path(SINK).exists() and Path(SOURCE).exists():
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    preseed = "postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run(["debconf-set-selections"], input=preseed.encode(), check=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "postfix"], env=env, check=False)
    return Path(SINK).exists() and Path(SOURCE).exists()


def start_sink(port: int, postfix: bool) -> subprocess.Popen[bytes]:
    if postfix:
        command = [SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"]
    else:
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return sink
        time.sleep(0.05)
    sink.kill()
    raise SystemExit("the sink did not start")


PG_URL = os.environ.get("REE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def engine_env() -> dict[str, str]:
    """The engine's commands run on the checkout this script belongs to. `python -m` puts the
    current directory first on the path, so run from another checkout (or with the project
    installed in editable mode from one) they would measure that one's code instead: an A/B
    of two checkouts then compares one engine with itself."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "NEWSLETTER_SECRET_KEY": "bench", "PYTHONPATH": path}


def write_config(folder: Path, port: int, connections: int, database_url: str, dkim: bool) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    swaps = {
        'url = "feeds/sample-ree-news.xml"': f'url = "{ROOT / "feeds" / "sample-ree-news.xml"}"',
        'host = "localhost"': 'host = "127.0.0.1"',
        "port = 587": f"port = {port}",
        'tls = "starttls"': 'tls = "none"',
        "connections = 4 ": f"connections = {connections} ",
        'url = "sqlite:///subscribers/subscribers.db"': f'url = "{database_url}"',
        'templates_dir = "templates"': f'templates_dir = "{ROOT / "templates"}"',
        'dir = "out"': f'dir = "{folder / "out"}"',
    }
    if dkim:
        from newsletter.mail.dkim import RSA, generate_key

        generate_key("bench", RSA, folder / "bench.pem")
        swaps['\nselector = ""'] = '\nselector = "bench"'
        swaps['\nprivate_key = ""'] = f'\nprivate_key = "{folder / "bench.pem"}"'
    for old, new in swaps.items():
        text = text.replace(old, new)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Store:
    """The benchmark's database: a SQLite file, or a throwaway PostgreSQL schema."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.path = folder / "bench.db"
        self.schema = f"bench_{secrets.token_hex(4)}"
        if kind == "sqlite":
            self.url = f"sqlite:///{self.path}"
        else:
            self._admin(f'CREATE SCHEMA "{self.schema}"')
            self.url = f"{PG_URL}?options=-csearch_path%3D{self.schema}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.encode())

    def drop(self) -> None:
        if self.kind == "postgresql":
            self._admin(f'DROP SCHEMA "{self.schema}" CASCADE')

    def watch(self) -> AbstractContextManager[Any]:
        """One connection that sees each commit as it lands (autocommit), for repeated looks."""
        if self.kind == "sqlite":
            return closing(sqlite3.connect(self.path, timeout=30, isolation_level=None))
        import psycopg

        return psycopg.connect(PG_URL, options=f"-csearch_path={self.schema}", autocommit=True)

    def execute(
        self, sql: str, rows: Iterable[tuple[object, ...]] | None = None
    ) -> list[tuple[object, ...]]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.path, timeout=30) as db:
                if rows is not None:
                    db.executemany(sql, rows)
                    return []
                return db.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(PG_URL, options=f"-csearch_path={self.schema}") as conn:
            sql = sql.replace("?", "%s")
            if rows is not None:
                with conn.cursor() as cursor:
                    cursor.executemany(sql.encode(), rows)
                return []
            return conn.execute(sql.encode()).fetchall()


def fill_store(config: Path, store: Store, count: int) -> None:
    """Create the schema through the program itself, then bulk-insert subscribers."""
    newsletter = [sys.executable, "-m", "newsletter", "--config", str(config)]
    subprocess.run([*newsletter, "subscribers", "counts"], env=engine_env(), cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    now = "2026-11-01 00:00:00.000000" if store.kind == "sqlite" else "2026-11-01T00:00:00Z"
    emails = (f"reader{n:07d}@example.org" for n in range(count))
    # A stream, not a list: a child's peak memory (ru_maxrss) starts from this process's
    # size when it forks, and a million rows held here made a send look 290 MB at its peak.
    rows = ((email, "active", "bench", now, now, now, new_public_id(), email) for email in emails)
    store.execute(
        "INSERT INTO subscribers"
        " (email, status, source, created_at, updated_at, confirmed_at, public_id, mailbox)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


@dataclass
class SendResult:
    seconds: float
    cpu: float
    system: float  # of `cpu`: the kernel's share (on loopback it also runs the sink's receive path)
    sink_cpu: float  # the sink's own CPU meanwhile: it shares the two cores with the sender
    peak_mb: float
    floor_mb: float  # this script's own size as it started the send (see `own_rss_mb`)
    first_message: float
    sent: int
    size: int


def first_delivery(store: Store, started: float, process: subprocess.Popen[bytes]) -> float:
    """Seconds from start until the ledger holds its first row (a message the sink accepted).

    It looks every 5 ms on one connection held open: a connection per look made PostgreSQL
    start a server process every 5 ms, CPU taken from the send being timed on a 2-core box."""
    with store.watch() as look:
        while process.poll() is None:
            try:
                if look.execute("SELECT 1 FROM deliveries LIMIT 1").fetchall():
                    return time.monotonic() - started
            except Exception:  # the database is busy: look again
                pass
            time.sleep(0.005)
    return time.monotonic() - started


def compile_engine() -> None:
    """Byte-compile the engine's modules, as installing a package does. Run from a checkout
    with PYTHONDONTWRITEBYTECODE=1 (as on these machines) every start compiles ~140 modules
    from source: 0.15-0.3 s before the first message that an installed engine does not pay."""
    compileall.compile_dir(ROOT / "newsletter", quiet=1)


def warm_up(config: Path) -> None:
    """Read what the send will read, once, untimed: the engine's modules and the store. This
    machine's kernel reclaims pages left idle for a while (DAMON), so the first send after a
    pause read its ~500 modules from disk and took 1.5-3.5 s to its first message instead of
    0.6-1.0 s: the disk's figure, not the engine's. A daily send from cron may well start cold;
    the README gives both."""
    command = [sys.executable, "-m", "newsletter", "--config", str(config), "status"]
    subprocess.run(command, env=engine_env(), cwd=ROOT, check=True, capture_output=True)
    modules = ("pipeline", "render", "mail.smtp", "mail.dkim")
    code = "import " + ", ".join(f"newsletter.{name}" for name in modules)
    subprocess.run([sys.executable, "-c", code], env=engine_env(), cwd=ROOT, check=True)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far; 0 where /proc is not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_rss_mb() -> float:
    """This process's resident size. Linux starts a child's ru_maxrss from the size of the
    process that forked it, so a child's reported peak is never below this."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_send(
    config: Path, store: Store, processes: int, sink: int, profile: str = ""
) -> SendResult:
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    command = [*python, "-m", "newsletter", "--config", str(config), "send"]
    command += ["--force", "--date", ISSUE_DATE]
    if processes > 1:
        command += ["--processes", str(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sink_before = process_cpu(sink)
    floor = own_rss_mb()
    started = time.monotonic()
    process = subprocess.Popen(command, env=engine_env(), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    first = first_delivery(store, started, process)
    out, err = process.communicate()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sink_cpu = process_cpu(sink) - sink_before
    if process.returncode != 0:
        raise SystemExit(f"send failed ({process.returncode}): {out.decode()} {err.decode()}")
    sent = int(str(store.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'")[0][0]))
    size = max(int(n.replace(",", "")) for n in re.findall(r"message size: ([\d,]+)", out.decode()))
    system = after.ru_stime - before.ru_stime
    cpu = (after.ru_utime - before.ru_utime) + system
    peak = after.ru_maxrss / 1024
    return SendResult(seconds, cpu, system, sink_cpu, peak, floor, first, sent, size)


def time_reports(config: Path) -> dict[str, float]:
    """Wall seconds of the operator's read commands on the store as the send left it (a whole
    process each: start-up included, as the operator waits for it)."""
    newsletter = [sys.executable, "-m", "newsletter", "--config", str(config)]
    timed: dict[str, float] = {}
    for words in (["status"], ["status", "--json"], ["subscribers", "counts"]):
        started = time.monotonic()
        subprocess.run([*newsletter, *words], env=engine_env(), cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        timed[" ".join(words)] = time.monotonic() - started
    return timed


def run_source(port: int, count: int, size: int, sessions: int, sink: int) -> tuple[float, float]:
    """Seconds smtp-source took, and the sink's CPU seconds meanwhile."""
    command = [SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size)]
    command += ["-f", "from@example.com", "-t", "to@example.com", f"127.0.0.1:{port}"]
    sink_before = process_cpu(sink)
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started, process_cpu(sink) - sink_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--dkim", action="store_true", help="sign every message (RSA-2048)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--reports", action="store_true", help="then time `status` and `subscribers counts`"
    )
    parser.add_argument(
        "--skip-source",
        action="store_true",
        help="no smtp-source run (a long send where only its own figures matter)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", default="", help="run the send under cProfile into FILE"
    )
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up: the send reads its modules from disk"
    )
    args = parser.parse_args()
    if args.profile and args.processes > 1:
        parser.error("--profile profiles one process: leave --processes at 1")
    reports: dict[str, float] = {}
    compile_engine()
    postfix = ensure_postfix()
    port = free_port()
    sink = start_sink(port, postfix)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            store = Store(args.store, folder)
            try:
                config = write_config(folder, port, args.connections, store.url, args.dkim)
                fill_store(config, store, args.subscribers)
                if not args.cold:
                    warm_up(config)
                ours = run_send(config, store, args.processes, sink.pid, args.profile)
                if args.reports:
                    reports = time_reports(config)
            finally:
                store.drop()
        compare = postfix and not args.skip_source
        source, source_sink, wide = 0.0, 0.0, 0.0
        if compare:
            source, source_sink = run_source(port, ours.sent, ours.size, args.connections, sink.pid)
            if args.processes > 1:  # as many sessions as the send's processes held together
                sessions = args.connections * args.processes
                wide, _ = run_source(port, ours.sent, ours.size, sessions, sink.pid)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    report(args, postfix, ours, source, source_sink)
    if wide:
        sessions = args.connections * args.processes
        wide_rate = ours.sent / wide
        print(
            f"smtp-source with {sessions} sessions (all the send's connections): "
            f"{wide_rate:,.0f} msg/s, ratio {ours.sent / ours.seconds / wide_rate:.2f}"
        )
    for words, seconds in reports.items():
        print(f"newsletter {words}: {seconds:.2f} s")


def report(
    args: argparse.Namespace, postfix: bool, ours: SendResult, source: float, source_sink: float
) -> None:
    rate = ours.sent / ours.seconds
    print(f"engine: {ROOT / 'newsletter'}")
    print(f"sink: {'postfix smtp-sink' if postfix else 'aiosmtpd (smtp-sink unavailable)'}")
    print(
        f"subscribers: {args.subscribers:,}  connections: {args.connections} per process  "
        f"processes: {args.processes}  store: {args.store}  "
        f"dkim: {'rsa-2048' if args.dkim else 'off'}"
    )
    print(f"message size: {ours.size:,} bytes")
    print(f"newsletter send: {ours.sent:,} messages in {ours.seconds:.2f} s = {rate:,.0f} msg/s")
    if source:
        source_rate = ours.sent / source
        print(
            f"smtp-source:     {ours.sent:,} messages in {source:.2f} s = {source_rate:,.0f} msg/s"
        )
        print(f"ratio (ours / smtp-source): {rate / source_rate:.2f}")
    per_message, system = ours.cpu / ours.sent * 1000, ours.system / ours.sent * 1000
    print(
        f"CPU per message: {per_message:.3f} ms (whole process, incl. start-up; "
        f"{system:.3f} ms of it in the kernel)"
    )
    sink_line = f"sink CPU per message: {ours.sink_cpu / ours.sent * 1000:.3f} ms during our send"
    if source:
        sink_line += f", {source_sink / ours.sent * 1000:.3f} ms during smtp-source's"
    print(sink_line)
    print(
        f"peak memory: {ours.peak_mb:.0f} MB (the largest process; never below this script's "
        f"{ours.floor_mb:.0f} MB as it started the send)"
    )
    print(f"time to first message: {ours.first_message:.2f} s")


if __name__ == "__main__":
    main()
