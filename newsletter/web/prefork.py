"""`newsletter serve --workers N`: N processes answering on one port.

The parent binds the port, forks N workers and then only watches them. Each worker starts from
the parent's state (settings read and checked, the store already migrated) and runs what one
process runs: its own store connections, app, sign-up queue and uvicorn on the inherited
socket, with uvicorn's own signal handling. So on SIGTERM every worker finishes its open
requests, does its queued sign-ups and closes its store, as `newsletter serve` alone does. The
kernel hands each new connection to one of the workers waiting on the socket.

The parent passes SIGTERM and SIGINT on to every worker as SIGTERM (Ctrl-C in a terminal has
already reached them all, and a second SIGINT would make uvicorn skip the drain), waits for all
of them, and returns 0 when all stopped cleanly. A worker that exits on its own stops the others
and the parent returns 1, so the service manager (systemd's `Restart=`) restarts the service
whole: the parent does not fork again from a process that by then runs threads (the metrics
listener).

Why not uvicorn's own `--workers`: it spawns fresh interpreters that import the app by name, so
each would read the config and the environment again and open its store outside `Door`, and
a command that was handed its clock or environment (tests) would not hand them on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from newsletter.errors import NewsletterError
from newsletter.web.server import EmbeddedServer, exit_quietly_on_stop_signals

log = logging.getLogger(__name__)
STOPS = (signal.SIGTERM, signal.SIGINT)


class Workers:
    """Forked worker processes and the parent's watch over them."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.statuses: dict[int, int] = {}
        self.stopping = False
        self._previous: dict[int, object] = {}

    def start(self, count: int, run: Callable[[], None]) -> None:
        """Fork `count` workers that each call `run` and exit with its status; never returns in
        a worker. Stop signals are blocked meanwhile, so none lands between a fork and the
        worker's own handlers (a signal that comes then is passed on once all are forked)."""
        if threading.active_count() > 1:  # a fork copies one thread and every lock as it is
            raise NewsletterError("cannot fork workers from a process that runs threads")
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        try:
            for stop in STOPS:
                self._previous[stop] = signal.signal(stop, self._forward)
            for _ in range(count):
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _worker(run)  # does not return
                self.pids.add(pid)
        except BaseException:  # fork refused (no memory, process limit): none left running
            self.stop()
            self.wait()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)

    def wait(self) -> int:
        """Wait for every worker; 0 when all stopped cleanly after a stop signal."""
        failed = False
        try:
            while self.pids:
                pid, status = os.waitpid(-1, 0)  # a signal runs `_forward`, then this goes on
                if pid not in self.pids:
                    continue
                self.pids.discard(pid)
                code = self.statuses[pid] = os.waitstatus_to_exitcode(status)
                if not self.stopping:
                    log.error("worker %d exited (status %d): stopping the others", pid, code)
                    failed = True
                    self.stop()
                elif code != 0:
                    log.error("worker %d stopped with status %d", pid, code)
                    failed = True
        finally:
            for stop, handler in self._previous.items():
                signal.signal(stop, handler)  # type: ignore[arg-type]
        return 1 if failed else 0

    def stop(self) -> None:
        self.stopping = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping %d worker(s)", signal.Signals(signum).name, len(self.pids))
        self.stop()


def _worker(run: Callable[[], None]) -> None:
    """The forked child: its own stop handlers, `run`, then exit without unwinding the parent's
    stack (the command, the test runner) that the fork copied."""
    status = 1
    try:
        exit_quietly_on_stop_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
        run()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except NewsletterError as exc:
        log.error("worker %d: %s", os.getpid(), exc)
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def bind(config: uvicorn.Config) -> socket.socket:
    """The listening socket every worker inherits; uvicorn logs "running on" it. It listens at
    once, so a connection made before a worker is ready waits in the backlog."""
    sock = config.bind_socket()
    sock.listen(config.backlog)
    return sock


@contextlib.contextmanager
def server_in_thread(config: uvicorn.Config, sock: socket.socket) -> Iterator[None]:
    """A uvicorn server on `sock` in a thread of the parent (the metrics listener), stopped on
    the way out. Started only after the fork: a worker must not inherit a running thread."""
    server = EmbeddedServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
