"""What an operator watches during a send: a live bar on a terminal, plain lines under cron.

Both are fed by the pipeline's outcome hook, one call per recorded reply, so they show what the
ledger holds, not what was merely queued. Under cron a line also comes every `LOG_EVERY` seconds
while no reply arrives (a stalled relay), from a small thread, so the log shows the run is alive.
rich, which draws the bar, is loaded only for a terminal: ~40 ms of a send's start-up, and most
sends (cron, the scheduler) have none.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from newsletter.compose import ComposedMessage
from newsletter.errors import StoreError
from newsletter.models import Outcome

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

LOG_EVERY = 10.0  # seconds between plain progress lines


class SendProgress:
    """Use as a context manager; pass the instance as `Run.on_outcome`."""

    def __init__(
        self,
        total: int | Callable[[], int],
        stream: TextIO | None = None,
        every: float = LOG_EVERY,
    ) -> None:
        """`total`: the readers, or how to count them. A count is taken when first shown: the
        first plain line comes `every` seconds in, and a million readers take ~0.1 s to count,
        which the first message would otherwise wait for."""
        self._count = total if callable(total) else (lambda: total)
        self._total: int | None = None
        self.every = every
        self.stream = stream or sys.stderr
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.last_line = self.started
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ticker: threading.Thread | None = None

    @property
    def total(self) -> int:
        """The readers to send to; 0 when the store could not say (the lines then show none)."""
        if self._total is None:
            try:
                self._total = max(self._count(), 0)
            except StoreError:
                self._total = 0
        return self._total

    def __enter__(self) -> SendProgress:
        if self.stream.isatty() and self.total:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("sending"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[counts]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("send", total=self.total, counts="", rate="")
        elif self.every > 0:
            self.ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self.ticker.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.done.set()
        if self.ticker is not None:
            self.ticker.join()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return sum(self.counts.values()) / elapsed if elapsed > 0 else 0.0

    def describe(self) -> str:
        done = sum(self.counts.values())
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        rate = self.rate()
        if not self.total:
            return f"{done} {counts} {rate:.0f} msg/s"
        left = (self.total - done) / rate if rate and self.total > done else 0.0
        return f"{done}/{self.total} {counts} {rate:.0f} msg/s, about {left:.0f} s left"

    def __call__(self, message: ComposedMessage, outcome: Outcome) -> None:
        with self.lock:  # the ticker thread reads the counts
            self.counts[outcome.status.value] += 1
        if self.bar is not None and self.task is not None:
            counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            rate = f"{self.rate():.0f}/s"
            self.bar.update(self.task, advance=1, counts=counts, rate=rate)
            return
        self._line_if_due()

    def _tick(self) -> None:
        while not self.done.wait(self.every / 4):
            self._line_if_due()

    def _line_if_due(self) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.last_line >= self.every:
                self.last_line = now
                print(f"progress: {self.describe()}", file=self.stream, flush=True)
