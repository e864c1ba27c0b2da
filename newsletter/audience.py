"""Who gets the issue and what each reply means: audience, late suppression, ledger, bounces.

The audience is streamed from the store and re-checked in small batches right before the
messages are queued, so an unsubscribe stored while the issue goes out takes effect within a
few dozen messages (those already queued or on the wire). Every reply is handed to the ledger as
soon as it arrives and committed before that connection's next message data goes out; that is
what lets a later run resume without losing or doubling anyone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from newsletter import lease
from newsletter.bounces import Verp, is_hard_bounce
from newsletter.clock import Clock
from newsletter.compose import ComposedMessage, MessageTemplate, envelope_address
from newsletter.config import Settings
from newsletter.ledger_writer import LedgerWriter, Receipt
from newsletter.models import (
    Batch,
    DeliveryStatus,
    Issue,
    Outcome,
    Recipient,
    RunSummary,
    Subscriber,
    SubscriberStatus,
)
from newsletter.ports import Signer, Store
from newsletter.timing import retry_deadline

CHECK_BATCH = 32  # subscribers re-checked per query just before they are queued

RecipientFactory = Callable[[int, str, str], Recipient]  # id, address, public id


@dataclass
class Audience:
    """One issue's readers (or, with `issue=None`, the active list of a dry run)."""

    settings: Settings
    store: Store
    issue: Issue | None
    template: MessageTemplate
    recipient: RecipientFactory
    summary: RunSummary
    clock: Clock
    sign: Signer | None = None
    ledger: LedgerWriter | None = None  # None: nothing is recorded (dry run)
    on_outcome: Callable[[ComposedMessage, Outcome], None] | None = None
    retry_due: datetime | None = None  # deferred readers due by then are retried (None: now)
    owner: str = ""  # who claims this process's batches (lease.new_owner)
    takeover: bool = False  # only claim batches others left; plan no round
    claims: lease.Claims | None = field(init=False, default=None)  # None: a dry run
    verp: Verp | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        domain = self.settings.delivery.verp_domain
        if domain:
            self.verp = Verp(self.settings.secret_keys, domain)
        if self.issue is not None:
            size = self.settings.delivery.batch_size
            self.claims = lease.Claims(
                self.store, self.issue.id, self.owner, self.clock, size, plan=not self.takeover
            )

    def held(self) -> list[Batch]:
        return list(self.claims.held.values()) if self.claims else []

    def envelope_sender(self, message: ComposedMessage) -> str:
        if self.verp is None:
            return self.settings.from_address
        return self.verp.address(message.recipient.subscriber_id)

    def audience(self) -> Iterator[Subscriber]:
        if self.issue is None or self.claims is None:
            return self.store.iter_subscribers(SubscriberStatus.ACTIVE)
        issue = self.issue

        def due() -> datetime | None:
            now = self.clock()
            return self.retry_due or (now if now <= retry_deadline(self.settings, issue) else None)

        return self.claims.readers(due)

    def messages(self) -> Iterator[ComposedMessage]:
        """Compose each message just before it is queued, skipping who left meanwhile.

        One reader can never stop the list: whatever fails while making one reader's copy (an
        address the relay cannot take, a signing error) becomes that reader's outcome.
        """
        subscribers = self.audience()
        while batch := list(islice(subscribers, CHECK_BATCH)):
            still = self.store.active_ids([s.id for s in batch])
            for subscriber in batch:
                if subscriber.id not in still:
                    self.settle(subscriber, DeliveryStatus.SKIPPED, "no longer active at send time")
                    continue
                try:
                    message = self.compose(subscriber)
                except Exception as exc:  # poison isolation: this reader's outcome, not the run's
                    reason = f"no message for this reader: {type(exc).__name__}: {exc}"
                    self.settle(subscriber, DeliveryStatus.FAILED, reason[:500])
                    continue
                yield message

    def compose(self, subscriber: Subscriber) -> ComposedMessage:
        email = envelope_address(subscriber.email, smtputf8=self.settings.smtp.smtputf8)
        message = self.template.render(self.recipient(subscriber.id, email, subscriber.public_id))
        if self.sign is None:
            return message
        signed = self.sign(message.data, message.body)  # header fields added, the same body
        return ComposedMessage(message.recipient, message.message_id, signed, message.body)

    def settle(self, subscriber: Subscriber, status: DeliveryStatus, detail: str) -> None:
        """A final outcome for a reader no message was made for (so it was never sent)."""
        outcome = Outcome(status, detail, attempts=0)
        if self.issue is not None and self.ledger is not None:
            self.store.record_outcome(self.issue.id, subscriber.id, outcome, self.clock())
        if self.claims is not None:
            self.claims.settled(subscriber.id)

    def record(self, message: ComposedMessage, outcome: Outcome) -> Awaitable[None]:
        """Hand the outcome to the ledger now; what depends on its being stored (a hard bounce,
        the batch's progress, the progress report) runs when the returned awaitable is awaited
        (`pool.Recorder`), after the commit."""
        self.summary.recipients += 1
        self.summary.message_bytes = max(self.summary.message_bytes, len(message.data))
        receipt = None
        if self.issue is not None and self.ledger is not None:
            receipt = self.ledger.record(message.recipient.subscriber_id, outcome)
        return self._stored(message, outcome, receipt)

    async def _stored(
        self, message: ComposedMessage, outcome: Outcome, receipt: Receipt | None
    ) -> None:
        if receipt is not None:
            subscriber_id = message.recipient.subscriber_id
            await receipt
            if outcome.status is DeliveryStatus.FAILED and is_hard_bounce(
                outcome.code, outcome.detail
            ):
                threshold = self.settings.delivery.bounce_threshold
                self.store.record_hard_bounce(subscriber_id, threshold, self.clock())
            if self.claims is not None:
                self.claims.settled(subscriber_id)
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)
