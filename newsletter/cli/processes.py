"""`newsletter send --processes N`: N copies of the same send on this host, sharing one issue.

Each copy is the ordinary command in its own process (one core each: signing and composing are
CPU-bound); they share the work through the store's batches, so the same works across hosts by
starting `newsletter send` on each. The parent only starts them, passes SIGTERM/SIGINT on, and
exits with the worst status any of them had.

Where the system can fork, the parent imports what a send needs once and forks the copies, each
then running the command's own `main`: a fresh interpreter would spend ~0.7 s of CPU importing
the same modules again, all of it before its first message (bench/send_bench.py). The parent
holds no connection, loop or thread when it forks. Elsewhere the copies are new interpreters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

from newsletter.cli.door import Door


def child_argv(door: Door) -> list[str]:
    """The same `send` for one process: config, date and --force as given, no --processes."""
    args = door.args
    argv = ["--config", str(door.config_path), "send"]
    if args.date is not None:
        argv += ["--date", args.date.isoformat()]
    if args.force:
        argv.append("--force")
    if args.weekly:
        argv.append("--weekly")
    return argv


class Child:
    """One copy: a forked process running `main`, or a new interpreter."""

    def __init__(self, argv: list[str], environ: Mapping[str, str], fork: bool) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.status: int | None = None
        if not fork:
            command = [sys.executable, "-m", "newsletter", *argv]
            self.process = subprocess.Popen(command, env=dict(environ))
            self.pid = self.process.pid
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child's coverage is not collected
            os._exit(_child_main(argv, environ))  # never returns into the parent's code

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.status is None

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.pid, signum)

    def wait(self) -> int:
        if self.process is not None:
            return self.process.wait()
        while self.status is None:
            try:
                _, raw = os.waitpid(self.pid, 0)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                continue
            self.status = os.waitstatus_to_exitcode(raw)
        return self.status


def _child_main(argv: list[str], environ: Mapping[str, str]) -> int:
    """A forked copy: the command's own `main` (its errors become statuses there); whatever
    escapes it still ends here, in this process, with a status."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 1
    try:
        from newsletter.cli.main import main

        code = main(argv, environ=environ)
    except SystemExit as done:  # as the interpreter reads it: None is success, text a failure
        if done.code is None or isinstance(done.code, int):
            code = done.code or 0
        else:
            print(done.code, file=sys.stderr)
    except BaseException as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def preload(door: Door) -> None:
    """Import what every copy's send imports, before forking, so each gets it for free."""
    import newsletter.cli.runtime
    import newsletter.feeds
    import newsletter.mail.smtp
    import newsletter.pipeline
    import newsletter.render

    newsletter.cli.runtime.loop_factory()  # imports uvloop where it is installed
    if door.settings.dkim.enabled:
        import newsletter.mail.dkim


def run_processes(door: Door, count: int, *, fork: bool | None = None) -> int:
    argv = child_argv(door)
    fork = hasattr(os, "fork") if fork is None else fork
    if fork:
        preload(door)
    children = [Child(argv, door.environ, fork) for _ in range(count)]

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            child.signal(signum)

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
