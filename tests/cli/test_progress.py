"""Under cron (no terminal) progress is plain lines built from the recorded outcomes."""

from __future__ import annotations

import io
import re

from newsletter.cli.progress import SendProgress
from newsletter.compose import ComposedMessage
from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus, Outcome, Recipient


def test_plain_lines_count_what_was_recorded() -> None:
    stream = io.StringIO()  # not a TTY: no live bar
    message = ComposedMessage(Recipient(1, "a@example.org", "https://x.example/u/t"), "<m@x>", b"")
    with SendProgress(total=4, stream=stream, every=0.0) as progress:
        for status in (DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.DEFERRED):
            progress(message, Outcome(status))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"progress: 3/4 deferred=1 sent=2 \d+ msg/s, about \d+ s left", lines[-1])


def test_the_readers_are_counted_once_and_only_when_a_line_first_shows_them() -> None:
    """A send's first message does not wait for a count of the whole list (~0.1 s at a
    million readers): under cron the first line comes seconds later."""
    stream = io.StringIO()
    counted: list[int] = []

    def count() -> int:
        counted.append(1)
        return 5

    message = ComposedMessage(Recipient(1, "a@example.org", "https://x.example/u/t"), "<m@x>", b"")
    with SendProgress(count, stream=stream, every=0.0) as progress:
        assert counted == []
        progress(message, Outcome(DeliveryStatus.SENT))
        progress(message, Outcome(DeliveryStatus.SENT))
    assert len(counted) == 1
    assert stream.getvalue().splitlines()[-1].startswith("progress: 2/5 sent=2 ")


def test_a_store_that_cannot_count_leaves_the_total_out_and_the_send_going() -> None:
    stream = io.StringIO()

    def count() -> int:
        raise StoreError("count_active: database is locked")

    message = ComposedMessage(Recipient(1, "a@example.org", "https://x.example/u/t"), "<m@x>", b"")
    with SendProgress(count, stream=stream, every=0.0) as progress:
        progress(message, Outcome(DeliveryStatus.SENT))
    assert re.fullmatch(r"progress: 1 sent=1 \d+ msg/s", stream.getvalue().splitlines()[-1])
