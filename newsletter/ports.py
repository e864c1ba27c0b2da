"""The two narrow interfaces through which the core sees the world: a store and a transport.

The pipeline is handed implementations of these; it never imports SQLAlchemy or aiosmtplib.
`store.SqlStore` and `transport.SmtpTransport` / `transport.OutboxTransport` are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Protocol

from .models import (
    Digest,
    FeedState,
    Issue,
    IssueStatus,
    Outcome,
    Subscriber,
    SubscriberStatus,
)


class Store(Protocol):
    """Subscribers, issues, the delivery ledger and feed state."""

    # subscribers
    def add_subscriber(
        self, email: str, *, status: SubscriberStatus, source: str, now: datetime
    ) -> Subscriber: ...
    def get_subscriber(self, email: str) -> Subscriber | None: ...
    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None: ...
    def set_status(self, subscriber_id: int, status: SubscriberStatus, now: datetime) -> None: ...
    def iter_subscribers(self, status: SubscriberStatus | None = None) -> Iterator[Subscriber]: ...
    def count_by_status(self) -> dict[SubscriberStatus, int]: ...

    # issues
    def get_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def previous_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def create_issue(
        self, newsletter: str, issue_date: date, cutoff: datetime, digest: Digest, now: datetime
    ) -> Issue: ...
    def set_issue_status(self, issue_id: int, status: IssueStatus, now: datetime) -> None: ...
    def sent_article_ids(self, newsletter: str, article_ids: Iterable[str]) -> set[str]: ...

    # audience and ledger
    def pending_recipients(
        self, issue_id: int, batch_size: int = 1000, retry_due: datetime | None = None
    ) -> Iterator[Subscriber]: ...
    def record_outcome(
        self, issue_id: int, subscriber_id: int, outcome: Outcome, now: datetime
    ) -> None: ...
    def record_outcomes(
        self, issue_id: int, rows: Sequence[tuple[int, Outcome]], now: datetime
    ) -> None: ...
    def outcome_counts(self, issue_id: int) -> dict[str, int]: ...
    def ledger_session(
        self, issue_id: int
    ) -> AbstractContextManager[Callable[[Sequence[tuple[int, Outcome]], datetime], None]]:
        """A fast writer of ledger rows for the length of one send."""
        ...

    # reliable delivery: one run per issue, bounces, history
    def claim_issue(
        self,
        issue_id: int,
        owner: str,
        until: datetime,
        now: datetime,
        steal_from: str | None = None,
    ) -> bool: ...
    def get_issue_by_id(self, issue_id: int) -> Issue | None: ...
    def active_ids(self, subscriber_ids: Sequence[int]) -> set[int]: ...
    def release_issue(self, issue_id: int, owner: str) -> None: ...
    def record_hard_bounce(self, subscriber_id: int, threshold: int, now: datetime) -> bool: ...
    def recent_issues(self, newsletter: str, limit: int = 10) -> list[Issue]: ...

    # feed state
    def get_feed_state(self, url: str) -> FeedState | None: ...
    def save_feed_state(self, state: FeedState) -> None: ...

    def prune_pending(self, created_before: datetime) -> int:
        """Delete never-confirmed sign-ups older than that; return how many."""
        ...

    def close(self) -> None:
        """Release connections; a long-running process calls this on shutdown."""
        ...


class Connection(Protocol):
    """One open session with the mail server, reused for many messages."""

    async def send(self, sender: str, recipient: str, data: bytes) -> str:
        """Send prebuilt bytes; return the server's reply text or raise a DeliveryError."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def connect(self) -> Connection: ...
