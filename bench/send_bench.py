"""Throughput of a real `newsletter send` against Postfix's smtp-source, into one smtp-sink.

Run:  .venv/bin/python bench/send_bench.py [--subscribers 20000] [--connections 4]

It starts `smtp-sink` on 127.0.0.1 (installing Debian's postfix package if it is missing and we
are root; otherwise it falls back to an aiosmtpd sink, whose own speed then caps the figures),
fills a fresh SQLite store with N active subscribers, runs `newsletter send` of the bundled
sample digest into the sink as a subprocess (ledger on), then pushes the same number of messages
of the same size with `smtp-source` into the same sink, and prints both rates, their ratio, CPU
time per message, peak memory and the time to the first message. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def write_config(folder: Path, port: int, connections: int) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    swaps = {
        'url = "feeds/sample-ree-news.xml"': f'url = "{ROOT / "feeds" / "sample-ree-news.xml"}"',
        'host = "localhost"': 'host = "127.0.0.1"',
        "port = 587": f"port = {port}",
        'tls = "starttls"': 'tls = "none"',
        "connections = 4 ": f"connections = {connections} ",
        'url = "sqlite:///subscribers/subscribers.db"': f'url = "sqlite:///{folder / "bench.db"}"',
        'templates_dir = "templates"': f'templates_dir = "{ROOT / "templates"}"',
        'dir = "out"': f'dir = "{folder / "out"}"',
    }
    for old, new in swaps.items():
        text = text.replace(old, new)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fill_store(config: Path, database: Path, count: int) -> None:
    """Create the schema through the program itself, then bulk-insert subscribers."""
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench"}
    newsletter = [sys.executable, "-m", "newsletter", "--config", str(config)]
    subprocess.run([*newsletter, "subscribers", "counts"], env=env, check=True, capture_output=True)
    now = "2026-11-01 00:00:00.000000"
    rows = [(f"reader{n:06d}@example.org", "active", "bench", now, now, now) for n in range(count)]
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO subscribers (email, status, source, created_at, updated_at, confirmed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


@dataclass
class SendResult:
    seconds: float
    cpu: float
    peak_mb: float
    first_message: float
    sent: int
    size: int


def first_delivery(database: Path, started: float, process: subprocess.Popen[bytes]) -> float:
    """Seconds from start until the ledger holds its first row (a message the sink accepted)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        while process.poll() is None:
            try:
                if db.execute("SELECT 1 FROM deliveries LIMIT 1").fetchone():
                    return time.monotonic() - started
            except sqlite3.OperationalError:
                pass
            time.sleep(0.002)
        return time.monotonic() - started
    finally:
        db.close()


def run_send(config: Path, database: Path) -> SendResult:
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench"}
    command = [sys.executable, "-m", "newsletter", "--config", str(config), "send"]
    command += ["--force", "--date", ISSUE_DATE]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = first_delivery(database, started, process)
    out, err = process.communicate()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"send failed ({process.returncode}): {out.decode()} {err.decode()}")
    sent = int(out.decode().split("outcomes: sent=")[1].split()[0].rstrip(","))
    size = int(out.decode().split("message size: ")[1].split()[0].replace(",", ""))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return SendResult(seconds, cpu, after.ru_maxrss / 1024, first, sent, size)


def run_source(port: int, count: int, size: int, sessions: int) -> float:
    command = [SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size)]
    command += ["-f", "from@example.com", "-t", "to@example.com", f"127.0.0.1:{port}"]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    postfix = ensure_postfix()
    port = free_port()
    sink = start_sink(port, postfix)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config = write_config(folder, port, args.connections)
            fill_store(config, folder / "bench.db", args.subscribers)
            ours = run_send(config, folder / "bench.db")
        source = run_source(port, ours.sent, ours.size, args.connections) if postfix else 0.0
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    report(args, postfix, ours, source)


def report(args: argparse.Namespace, postfix: bool, ours: SendResult, source: float) -> None:
    rate = ours.sent / ours.seconds
    print(f"sink: {'postfix smtp-sink' if postfix else 'aiosmtpd (smtp-sink unavailable)'}")
    print(f"subscribers: {args.subscribers:,}  connections: {args.connections}")
    print(f"message size: {ours.size:,} bytes")
    print(f"newsletter send: {ours.sent:,} messages in {ours.seconds:.2f} s = {rate:,.0f} msg/s")
    if source:
        source_rate = ours.sent / source
        print(
            f"smtp-source:     {ours.sent:,} messages in {source:.2f} s = {source_rate:,.0f} msg/s"
        )
        print(f"ratio (ours / smtp-source): {rate / source_rate:.2f}")
    print(f"CPU per message: {ours.cpu / ours.sent * 1000:.3f} ms (whole process, incl. start-up)")
    print(f"peak memory: {ours.peak_mb:.0f} MB")
    print(f"time to first message: {ours.first_message:.2f} s")


if __name__ == "__main__":
    main()
