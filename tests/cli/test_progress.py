"""Under cron (no terminal) progress is plain lines built from the recorded outcomes."""

from __future__ import annotations

import io
import re

from newsletter.cli.progress import SendProgress
from newsletter.compose import ComposedMessage
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
