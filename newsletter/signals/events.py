"""What a bounce or complaint report says, whoever sent it.

A `Signal` carries the *candidates* for finding the reader: Message-IDs that may be ours and
strings that may hold our VERP envelope sender. Neither is trusted as such: a Message-ID counts
only if the ledger holds it (ours are random and unguessable), a VERP id only if its HMAC is
right. The address a report names (`recipient`) is kept for the operator to read and is never
used to pick a reader: a forged or misdirected report must not unsubscribe somebody else.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from newsletter.models import storable

DETAIL_MAX = 300
KEY_MAX = 200
_ADDRESS = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+")
_MESSAGE_ID = re.compile(r"<?\s*([^<>\s@]+@[^<>\s@]+?)\s*>?$")


class SignalKind(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"  # the mailbox does not exist (or the provider gave up on it)
    SOFT_BOUNCE = "soft_bounce"  # a temporary or non-address failure: recorded, no suppression
    COMPLAINT = "complaint"  # the reader pressed "this is spam": unsubscribed at once


@dataclass(frozen=True)
class Signal:
    """One report about one message to one reader."""

    provider: str
    event_key: str  # unique per provider: a provider's retry or a re-read mailbox repeats it
    kind: SignalKind
    message_ids: tuple[str, ...] = ()
    verp: tuple[str, ...] = ()
    recipient: str = ""
    detail: str = ""
    occurred_at: datetime | None = None
    # Readers the caller already authenticated (a signed unsubscribe link in the original).
    signed_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.event_key or len(self.event_key) > KEY_MAX:
            raise ValueError(f"event key must be 1-{KEY_MAX} characters: {self.event_key!r}")
        # A report is anyone's text (a bounce from any mail server, a provider's JSON, which
        # may spell a NUL or a lone surrogate): made storable once, here, so that no lookup
        # or write of it fails the request and every other report in it.
        for name in ("event_key", "recipient", "detail"):
            object.__setattr__(self, name, storable(getattr(self, name)))
        for name in ("message_ids", "verp"):
            object.__setattr__(self, name, tuple(storable(v) for v in getattr(self, name)))


def message_id_candidates(values: Iterable[object]) -> tuple[str, ...]:
    """Values as `<left@right>` Message-IDs (Mailgun drops the angle brackets), others dropped."""
    found: list[str] = []
    for value in values:
        if not isinstance(value, str):
            continue
        match = _MESSAGE_ID.match(value.strip())
        if match and len(value) <= 998:
            candidate = f"<{match.group(1)}>"
            if candidate not in found:
                found.append(candidate)
    return tuple(found)


def strings(values: Iterable[object]) -> tuple[str, ...]:
    """The string values among `values` (payload fields may hold anything)."""
    return tuple(value for value in values if isinstance(value, str) and value)


def scrub(text: object, limit: int = DETAIL_MAX) -> str:
    """Diagnostic text without addresses (they are personal data), on one line, bounded."""
    if not isinstance(text, str | int | float):
        return ""
    one_line = " ".join(str(text).split())
    return _ADDRESS.sub("<address>", one_line)[:limit]
