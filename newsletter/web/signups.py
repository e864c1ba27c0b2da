"""The sign-up work queue: what happens after "check your inbox", at a fixed pace, one shape.

The form's answer never waits for the store or the mail. But work done right after the answer
would still show: a request arriving next on the same server would be slower after a new or
pending address (a row written, a mail built and sent) than after an active one, and that is
enough to tell who reads the newsletter. So the POST only puts (address, visitor, time) in a
bounded in-process queue, and one worker starts the waiting jobs (a few at most) on each tick
of a fixed grid (`SIGNUP_PACE`), whenever they were posted. Each job does the same work
whatever the address's state (`Subscriptions.sign_up`: the row, the mail built and DKIM-signed,
the request row; an SMTP session opened and closed, with the mail sent in it only when it is
due), and a honeypot catch does the same work without storing or sending anything.

A full queue answers 503 with Retry-After: a load problem, the same for every address.
On shutdown the queue is drained at once (`drain`), so an answered sign-up is not lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from newsletter.subscriptions import SignupRequest

log = logging.getLogger(__name__)
SIGNUP_PACE = 0.05  # seconds between ticks
PER_TICK = 4  # jobs a tick may start when sign-ups are waiting: up to 80 a second
MAX_RUNNING = 4  # jobs at once: a slow relay slows the pace instead of piling up connections
QUEUE_CAPACITY = 1000  # jobs waiting; some 15-50 s of work
DRAIN_TIMEOUT = 20.0  # seconds a shutdown waits for the queue and the mail in flight


@dataclass(frozen=True)
class SignupJob:
    request: SignupRequest
    decoy: bool = False  # the honeypot was filled: same work, nothing stored or sent


Work = Callable[[SignupJob], Awaitable[None]]


class SignupQueue:
    """Jobs answered but not yet done, and the one worker that does them on the tick grid.

    `offer` runs in the event loop (a request handler); `wait_idle` may be called from any
    thread (tests, shutdown). The worker exists only while there is work, so an idle app
    holds no task.
    """

    def __init__(
        self, work: Work, pace: float = SIGNUP_PACE, capacity: int = QUEUE_CAPACITY
    ) -> None:
        if pace <= 0 or capacity < 1:
            raise ValueError("the pace must be positive and the capacity at least 1")
        self._work = work
        self.pace = pace
        self.capacity = capacity
        self._queue: deque[SignupJob] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_RUNNING)
        self._pending = 0  # queued or being worked on
        self._changed = threading.Condition()

    def offer(self, job: SignupJob) -> bool:
        """Queue the job; False when the queue is full (the caller answers 503)."""
        if len(self._queue) >= self.capacity:
            return False
        self._queue.append(job)
        with self._changed:
            self._pending += 1
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._paced())
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued job is done (its mail included); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """On shutdown: do what is queued now, without waiting for ticks, within `timeout`."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        try:
            async with asyncio.timeout(timeout):
                while self._queue:
                    await self._slots.acquire()
                    self._start(self._queue.popleft())
                await asyncio.gather(*self._running)
        except TimeoutError:
            left = len(self._queue) + len(self._running)
            log.error("shutdown: %d sign-up(s) left undone after %.0f s", left, timeout)

    async def _paced(self) -> None:
        """On each tick start what waits (up to `PER_TICK`, and no more than `MAX_RUNNING` at
        once); a job runs on while the next ones wait for their tick."""
        loop = asyncio.get_running_loop()
        while self._queue:
            await asyncio.sleep(until_next_tick(loop.time(), self.pace))
            for _ in range(PER_TICK):
                await self._slots.acquire()
                if not self._queue:  # drained meanwhile
                    self._slots.release()
                    return
                self._start(self._queue.popleft())
                if self._slots.locked():  # all busy: the next job waits for the next tick
                    break

    def _start(self, job: SignupJob) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, job: SignupJob) -> None:
        try:
            await self._work(job)
        except Exception:  # a job has no caller to raise to; keep the worker going
            log.exception("sign-up (source %s) failed after the answer", job.request.source)
        finally:
            self._slots.release()
            with self._changed:
                self._pending -= 1
                self._changed.notify_all()


def until_next_tick(now: float, pace: float) -> float:
    """Seconds to the next multiple of `pace`: jobs start on a grid, not when they were posted."""
    return pace - (now % pace)
