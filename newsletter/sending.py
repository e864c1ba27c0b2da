"""The send phase of one issue: audience, last-moment suppression, ledger and bounces.

The audience is streamed from the store and re-checked in small batches right before the
messages are queued, so an unsubscribe stored while the issue goes out takes effect within a
few dozen messages (those already queued or on the wire). Every reply is written to the ledger
as soon as it arrives; that is what lets a later run resume without losing or doubling anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from .bounces import Verp, is_hard_bounce
from .compose import ComposedMessage, MessageTemplate
from .config import Settings
from .config_sections import DkimConfig
from .ledger_writer import LedgerWriter
from .models import (
    DeliveryStatus,
    Issue,
    Outcome,
    Recipient,
    RunSummary,
    Subscriber,
    SubscriberStatus,
)
from .ports import Store

CHECK_BATCH = 32  # subscribers re-checked per query just before they are queued

RecipientFactory = Callable[[int, str], Recipient]
Signer = Callable[[bytes], bytes]


def dkim_signer(config: DkimConfig) -> Signer | None:
    """The run's DKIM signer (keys read once), or None; dkimpy is imported only when needed."""
    if not (config.selector or config.ed25519_selector):
        return None
    from .dkim_sign import DkimSigner

    signer = DkimSigner.from_config(config)  # also refuses Ed25519 without RSA
    return signer.sign if signer else None


def retry_deadline(settings: Settings, issue: Issue) -> datetime:
    return issue.cutoff + timedelta(hours=settings.delivery.retry_deadline_hours)


@dataclass
class SendPhase:
    """Sends one issue (or, with `issue=None`, a dry run over the active list)."""

    settings: Settings
    store: Store
    issue: Issue | None
    template: MessageTemplate
    recipient: RecipientFactory
    summary: RunSummary
    clock: Callable[[], datetime]
    sign: Signer | None = None
    ledger: LedgerWriter | None = None  # None: nothing is recorded (dry run)
    on_outcome: Callable[[ComposedMessage, Outcome], None] | None = None
    verp: Verp | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        domain = self.settings.delivery.verp_domain
        if domain:
            self.verp = Verp(self.settings.secret_keys, domain)

    def envelope_sender(self, message: ComposedMessage) -> str:
        if self.verp is None:
            return self.settings.from_address
        return self.verp.address(message.recipient.subscriber_id)

    def audience(self) -> Iterator[Subscriber]:
        if self.issue is None:
            return self.store.iter_subscribers(SubscriberStatus.ACTIVE)
        now = self.clock()
        due = now if now <= retry_deadline(self.settings, self.issue) else None
        return self.store.pending_recipients(self.issue.id, retry_due=due)

    def messages(self) -> Iterator[ComposedMessage]:
        """Compose each message just before it is queued, skipping who left meanwhile."""
        subscribers = self.audience()
        while batch := list(islice(subscribers, CHECK_BATCH)):
            still = self.store.active_ids([s.id for s in batch])
            for subscriber in batch:
                if subscriber.id not in still:
                    self.skip(subscriber)
                    continue
                yield self.compose(subscriber)

    def compose(self, subscriber: Subscriber) -> ComposedMessage:
        message = self.template.render(self.recipient(subscriber.id, subscriber.email))
        if self.sign is None:
            return message
        return ComposedMessage(message.recipient, message.message_id, self.sign(message.data))

    def skip(self, subscriber: Subscriber) -> None:
        outcome = Outcome(DeliveryStatus.SKIPPED, "no longer active at send time", attempts=0)
        if self.issue is not None and self.ledger is not None:
            self.store.record_outcome(self.issue.id, subscriber.id, outcome, self.clock())

    async def record(self, message: ComposedMessage, outcome: Outcome) -> None:
        self.summary.recipients += 1
        self.summary.message_bytes = max(self.summary.message_bytes, len(message.data))
        if self.issue is not None and self.ledger is not None:
            subscriber_id = message.recipient.subscriber_id
            await self.ledger.record(subscriber_id, outcome)
            if outcome.status is DeliveryStatus.FAILED and is_hard_bounce(
                outcome.code, outcome.detail
            ):
                threshold = self.settings.delivery.bounce_threshold
                self.store.record_hard_bounce(subscriber_id, threshold, self.clock())
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)
