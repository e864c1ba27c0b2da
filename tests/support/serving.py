"""`newsletter serve` in its own process, as an operator runs it, with its JSON log read as it
comes: which worker (pid) answered which request, and what each one logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.clock import T0
from tests.support.faketime import wall_clock_env

ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3})')


class ServeProcess:
    """Start with `with ServeProcess(config, "--workers", "2") as serve:`; `serve.url` is the
    app's address. `stop()` sends SIGTERM and returns the exit status."""

    def __init__(self, config: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.options = options
        self.env = {
            **os.environ,
            "NEWSLETTER_SECRET_KEY": "serve-test-key",
            **wall_clock_env(T0),
            **(env or {}),
        }
        self.lines: list[dict[str, Any]] = []
        self.url = ""
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None
        self.status: int | None = None
        self._done = False  # stderr closed: the process and its workers are gone

    def __enter__(self) -> ServeProcess:
        command = [sys.executable, "-m", "newsletter", "--log-format", "json"]
        command += ["--config", str(self.config), "serve", "--port", "0", *self.options]
        self.process = subprocess.Popen(  # its own group: __exit__ kills the workers too
            command,
            cwd=self.config.parent,
            env=self.env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        found = self.wait_for(lambda: self._running_on() is not None, 30)
        assert found, f"serve did not report its address: {self.messages()}"
        self.url = self._running_on() or ""
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever the test did: no worker outlives it (a SIGKILLed parent leaves them)."""
        if self.process is None or (self.process.returncode is not None and self._done):
            return  # stopped, and every worker gone: the group id may be another's by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM, then the exit status (the parent's: 0 when every worker stopped cleanly)."""
        assert self.process is not None
        self.process.terminate()
        self.status = self.process.wait(timeout=timeout)
        self.wait_for(lambda: self._done, 5)
        return self.status

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10) -> bool:
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def messages(self, logger: str | None = None) -> list[str]:
        with self._changed:
            return [line["message"] for line in self.lines if logger in (None, line.get("logger"))]

    def answered(self, method: str, path: str) -> list[tuple[int, int]]:
        """(pid, status) of each such request, from the access log, in order."""
        found = []
        with self._changed:
            for line in self.lines:
                if line.get("logger") != "uvicorn.access":
                    continue
                access = ACCESS.search(line["message"])
                if access and (access["method"], access["path"]) == (method, path):
                    found.append((int(line["pid"]), int(access["status"])))
        return found

    def wait_answered(self, method: str, path: str, count: int) -> list[tuple[int, int]]:
        """The access log of `count` such requests (it is written just after each answer)."""
        assert self.wait_for(lambda: len(self.answered(method, path)) >= count), (
            f"{count} {method} {path} not in the access log: {self.messages()}"
        )
        return self.answered(method, path)

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"logger": "(not json)", "message": raw.rstrip("\n")}
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def _running_on(self) -> str | None:
        for message in self.messages("uvicorn.error"):
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", message)
            if found:
                return found.group(1)
        return None
