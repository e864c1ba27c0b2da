"""`newsletter send --processes N`: N copies of the same send on this host, sharing one issue.

Each copy is the ordinary command in its own process (one core each: signing and composing are
CPU-bound); they share the work through the store's batches, so the same works across hosts by
starting `newsletter send` on each. The parent only starts them, passes SIGTERM/SIGINT on, and
exits with the worst status any of them had.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from newsletter.cli.door import Door


def child_command(door: Door) -> list[str]:
    """The same `send` for one process: config, date and --force as given, no --processes."""
    args = door.args
    command = [sys.executable, "-m", "newsletter", "--config", str(door.config_path), "send"]
    if args.date is not None:
        command += ["--date", args.date.isoformat()]
    if args.force:
        command.append("--force")
    if args.weekly:
        command.append("--weekly")
    return command


def run_processes(door: Door, count: int) -> int:
    command = child_command(door)
    children = [subprocess.Popen(command, env=dict(door.environ)) for _ in range(count)]

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        statuses = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f"processes: {count}; their exit statuses: {', '.join(map(str, statuses))}")
    return worst(statuses)


def worst(statuses: Sequence[int]) -> int:
    """The status cron should see: any failure beats success, "not sent" beats "in part"."""
    codes = [code if code >= 0 else 3 for code in statuses]  # killed by a signal: stopped
    return max(codes, default=0)
