"""The test relay (`SmtpServer`) in a process of its own, where a real relay always is.

In the test's process the relay's work on each message (reading DATA, keeping it) takes the
GIL from the app under test, so it slows the app only when a mail is sent: noise of the harness
that a timing test would read as a leak of the app. Here the parent asks the child over a pipe
how many messages it holds; the child stops when its stdin closes.

    with SmtpProcess() as relay:
        ... relay.port ...
        assert relay.count() == 3
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parents[2]


class SmtpProcess:
    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> SmtpProcess:
        command = [sys.executable, "-m", "tests.support.smtp_process"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.port = int(self._line())
        return self

    def count(self) -> int:
        """How many messages the relay has accepted so far."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self._line())

    def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the relay process ended")
        return line.strip()

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        try:
            self.process.communicate(timeout=10)  # closes stdin: the child stops
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def _serve() -> None:
    with SmtpServer() as server:
        print(server.port, flush=True)
        for command in sys.stdin:
            if command.strip() == "count":
                print(len(server.messages), flush=True)


if __name__ == "__main__":
    _serve()
