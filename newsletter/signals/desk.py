"""Where a report becomes a change: find the reader, then record and apply it exactly once.

The reader is found by our own Message-ID (looked up in the ledger: it names the issue too) or
by a VERP envelope sender whose HMAC checks out (then the issue is the last one sent to that
reader before the report). The address in a report's body is never enough: a report that
matches neither is recorded as unmatched, for the operator, and changes no subscriber.

The store applies one request's signals in one transaction, together with the request's
idempotency key, so a provider's retry, a replayed request or a mailbox read twice changes
nothing the second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from newsletter.bounces import Verp
from newsletter.clock import Clock
from newsletter.signals.events import Signal


@dataclass(frozen=True)
class Match:
    subscriber_id: int
    issue_id: int | None
    by: str  # "message-id", "verp" or "token" (a signed unsubscribe link)


class SignalStore(Protocol):
    def delivery_by_message_id(self, message_id: str) -> tuple[int, int] | None: ...
    def last_issue_sent_to(self, subscriber_id: int, before: datetime) -> int | None: ...
    def subscriber_exists(self, subscriber_id: int) -> bool: ...
    def record_signals(
        self,
        provider: str,
        request_key: str | None,
        items: Sequence[tuple[Signal, Match | None]],
        bounce_threshold: int,
        now: datetime,
    ) -> list[str] | None: ...


@dataclass
class Taken:
    """What one request or mailbox message did: outcome counts; duplicate if seen before."""

    duplicate: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)


class SignalDesk:
    def __init__(self, store: SignalStore, verp: Verp, bounce_threshold: int, clock: Clock) -> None:
        self.store = store
        self.verp = verp
        self.bounce_threshold = bounce_threshold
        self.clock = clock

    def match(self, signal: Signal, now: datetime) -> Match | None:
        for message_id in signal.message_ids:
            found = self.store.delivery_by_message_id(message_id)
            if found is not None:
                return Match(subscriber_id=found[1], issue_id=found[0], by="message-id")
        for candidate in signal.verp:
            subscriber_id = self.verp.read(candidate)
            if subscriber_id is not None and self.store.subscriber_exists(subscriber_id):
                issue_id = self.store.last_issue_sent_to(subscriber_id, signal.occurred_at or now)
                return Match(subscriber_id=subscriber_id, issue_id=issue_id, by="verp")
        for subscriber_id in signal.signed_ids:
            if self.store.subscriber_exists(subscriber_id):
                issue_id = self.store.last_issue_sent_to(subscriber_id, signal.occurred_at or now)
                return Match(subscriber_id=subscriber_id, issue_id=issue_id, by="token")
        return None

    def take(self, provider: str, request_key: str | None, signals: Sequence[Signal]) -> Taken:
        """Record and apply one request's signals; `request_key` makes the request once-only."""
        now = self.clock()
        items = [(signal, self.match(signal, now)) for signal in signals]
        outcomes = self.store.record_signals(
            provider, request_key, items, self.bounce_threshold, now
        )
        if outcomes is None:
            return Taken(duplicate=True)
        return Taken(outcomes=Counter(outcomes))
