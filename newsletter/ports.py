"""The two narrow interfaces through which the core sees the world: a store and a transport.

The pipeline is handed implementations of these; it never imports SQLAlchemy or aiosmtplib.
`store.SqlStore` and `transport.SmtpTransport` / `transport.OutboxTransport` are the real ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Protocol

from newsletter.models import (
    Article,
    Batch,
    Digest,
    FeedState,
    Frequency,
    Issue,
    IssueStatus,
    Outcome,
    Subscriber,
    SubscriberStatus,
)


class LedgerWrite(Protocol):
    """Commits one group of outcomes of a send: stored when the call returns, or, where the
    commit waits on a server (PostgreSQL's), when the awaitable it returns is done."""

    def __call__(
        self, rows: Sequence[tuple[int, Outcome]], now: datetime
    ) -> Awaitable[None] | None: ...


class Store(Protocol):
    """Subscribers, issues, the delivery ledger and feed state."""

    # subscribers
    def add_subscriber(
        self,
        email: str,
        *,
        status: SubscriberStatus,
        source: str,
        now: datetime,
        mailbox: str | None = None,
    ) -> Subscriber: ...
    def get_subscriber(self, email: str) -> Subscriber | None: ...
    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None: ...
    def set_status(self, subscriber_id: int, status: SubscriberStatus, now: datetime) -> None: ...
    def iter_subscribers(self, status: SubscriberStatus | None = None) -> Iterator[Subscriber]: ...
    def count_by_status(self) -> dict[SubscriberStatus, int]: ...
    def count_active(self, frequency: Frequency) -> int: ...
    def frequency_of(self, subscriber_id: int) -> Frequency | None: ...
    def set_frequency(self, subscriber_id: int, frequency: Frequency, now: datetime) -> None: ...

    # issues
    def get_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def previous_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def count_issues(self, newsletter: str, before: date) -> int: ...
    def create_issue(
        self,
        newsletter: str,
        issue_date: date,
        cutoff: datetime,
        digest: Digest,
        now: datetime,
        kind: Frequency = Frequency.DAILY,
    ) -> Issue: ...
    def set_issue_status(self, issue_id: int, status: IssueStatus, now: datetime) -> None: ...
    def sent_article_ids(self, newsletter: str, article_ids: Iterable[str]) -> set[str]: ...

    # audience and ledger
    def pending_recipients(
        self,
        issue_id: int,
        batch_size: int = 1000,
        retry_due: datetime | None = None,
        within: Batch | None = None,
    ) -> Iterator[Subscriber]: ...
    def record_outcome(
        self, issue_id: int, subscriber_id: int, outcome: Outcome, now: datetime
    ) -> None: ...
    def record_outcomes(
        self, issue_id: int, rows: Sequence[tuple[int, Outcome]], now: datetime
    ) -> None: ...
    def outcome_counts(self, issue_id: int) -> dict[str, int]: ...
    def untried_count(self, issue_id: int) -> int: ...
    def any_untried(self, issue_id: int) -> bool: ...
    def expire_deferred(self, issue_id: int, now: datetime) -> int: ...
    def expire_untried(self, issue_id: int, now: datetime) -> int: ...
    def ledger_session(self, issue_id: int) -> AbstractAsyncContextManager[LedgerWrite]:
        """A fast writer of ledger rows for the length of one send."""
        ...

    # reliable delivery: one run per issue, bounces, history
    def plan_round(
        self,
        issue_id: int,
        size: int,
        retry_due: datetime | None,
        now: datetime,
        *,
        start: bool = True,
        limit: int | None = None,
    ) -> int: ...
    def claim_batch(
        self,
        issue_id: int,
        owner: str,
        until: datetime,
        now: datetime,
        steal_from: Sequence[str] = (),
    ) -> Batch | None: ...
    def renew_batch(self, batch: Batch, owner: str, until: datetime) -> bool: ...
    def finish_batch(self, batch: Batch, owner: str, now: datetime) -> None: ...
    def release_batch(self, batch: Batch, owner: str) -> None: ...
    def batch_holders(self, issue_id: int, now: datetime) -> list[str]: ...
    def free_batches(self, issue_id: int, now: datetime) -> int: ...
    def get_issue_by_id(self, issue_id: int) -> Issue | None: ...
    def active_ids(self, subscriber_ids: Sequence[int]) -> set[int]: ...
    def record_hard_bounce(self, subscriber_id: int, threshold: int, now: datetime) -> bool: ...
    def recent_issues(self, newsletter: str, limit: int = 10) -> list[Issue]: ...
    def sent_articles(
        self, newsletter: str, since: datetime, until: datetime
    ) -> list[tuple[date, int, Article]]: ...

    # feed state
    def get_feed_state(self, url: str) -> FeedState | None: ...
    def save_feed_state(self, state: FeedState, now: datetime) -> None: ...

    # feed entries across runs (store.entries)
    def remember_entries(
        self, newsletter: str, seen: Sequence[tuple[str, str]], now: datetime
    ) -> dict[str, datetime]: ...
    def first_seen(self, newsletter: str, entry_ids: Iterable[str]) -> dict[str, datetime]: ...
    def sent_links(self, newsletter: str, links: Iterable[str]) -> set[str]: ...
    def offer_articles(
        self, newsletter: str, issue_date: date, articles: Sequence[Article], now: datetime
    ) -> None: ...
    def offered_articles(self, newsletter: str, since: date) -> list[tuple[date, Article]]: ...

    def prune_pending(self, created_before: datetime) -> int:
        """Delete never-confirmed sign-ups older than that; return how many."""
        ...

    def close(self) -> None:
        """Release connections; a long-running process calls this on shutdown."""
        ...


# DKIM or any other last step on the exact bytes that are sent; handed in, never looked up.
class Signer(Protocol):
    """A DKIM signer: the message with its DKIM-Signature fields on top. `body_pieces`: the
    body in whole lines (`ComposedMessage.body`), which lets it canonicalize an issue's shared
    lines once; () to take the body as a whole."""

    def __call__(self, message: bytes, body_pieces: Sequence[bytes] = (), /) -> bytes: ...


Gate = Callable[[], Awaitable[None]]
# The next message a connection will send, as its envelope needs it: sender, recipient and the
# message's bytes (whose header decides SMTPUTF8); None when there is none yet.
Envelope = tuple[str, str, bytes]
Lookahead = Callable[[], Envelope | None]


class Connection(Protocol):
    """One open session with the mail server, reused for many messages."""

    async def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        gate: Gate | None = None,
        body: Sequence[bytes] = (),
        ahead: Lookahead | None = None,
    ) -> str:
        """Send prebuilt bytes; return the server's reply text or raise a DeliveryError.

        `body`: the body of `data` as whole lines in pieces (`ComposedMessage.body`), or (); an
        issue's shared pieces are the same objects in every copy, which lets the transport
        prepare each of them once (`mail.wire`).

        `gate` is awaited once the server has taken the envelope and waits for the data, before
        any of it is written: the pool waits there for the previous message's ledger commit, so
        the envelope's round trip overlaps the commit while no second message can be accepted
        unrecorded. If the gate raises, the session is dropped (it is half-way through DATA).

        `ahead`, if given, is asked once the gate has passed for the message the caller will
        send next on this connection; a session that pipelines may write that envelope in the
        same write as this data (RFC 2920 lets commands follow the end of the data), one write
        and one wake-up less per message. The caller's next `send` must then be that message.
        Once a next envelope is out the session cannot be reset, so if this message's data is
        refused, or anything fails after `ahead` answered, the caller drops the connection.
        """
        ...

    async def close(self) -> None:
        """End the session politely (QUIT)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once: after a timeout a polite QUIT would only wait again."""
        ...


class Transport(Protocol):
    async def connect(self) -> Connection: ...
