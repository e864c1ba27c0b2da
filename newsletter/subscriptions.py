"""Double opt-in, unsubscribe, export and erasure: the subscription rules, shared by web and CLI.

Handed its store, transport and clock like the pipeline, so the web app, the CLI and the tests
run exactly the same rules. Nothing here knows HTTP; the web layer decides what to show.

The rules (GDPR Art. 7 and ePrivacy Art. 13: documented prior consent; RFC 8058 and CAN-SPAM:
unsubscribe at once and for good; Spamhaus: confirmed opt-in, no list-bombing):
- A sign-up never activates an address: it records a consent request and sends one
  confirmation mail with a signed, expiring link. Only confirming makes the address active.
- Per mailbox (every spelling that reaches one inbox: `addresses.mailbox_key`) at most one mail
  per `resend_after_minutes` and `address_limit_per_day` mails a day, counted from the consent
  records, so no one can flood someone else's inbox.
- A sign-up does the same work whatever the address's state (new, pending, active,
  suppressed): one store write for the row, the mail built, one for the request; only the
  final decision differs, and an active address gets no mail.
- An unsubscribed or bounced address stays suppressed until a *new* request is confirmed.
- An erased address leaves only an HMAC of itself (`address_hashes`), keyed with the signing
  keys, so it is refused by imports without being stored in the clear.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from newsletter.addresses import mailbox_key, normalize_address
from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.confirm_mail import ConfirmationMail, ConfirmationMailer
from newsletter.errors import SuppressedAddressError, TokenError
from newsletter.models import (
    ConsentRequest,
    Frequency,
    ImportRow,
    ImportVerdict,
    MailLimits,
    Subscriber,
    SubscriberStatus,
    new_public_id,
)
from newsletter.ports import Signer, Transport
from newsletter.tokens import SubscriberRef, Tokens, confirm_url

SUPPRESSION_CONTEXT = b"ree-newsletter.suppression:"
# A token's stamp is whole seconds, taken just after its request was recorded.
TOKEN_STAMP_SLACK = timedelta(seconds=1)


class SubscriptionStore(Protocol):
    """What the subscription rules need from the store (`store.SqlStore` implements it)."""

    def add_subscriber(
        self,
        email: str,
        *,
        status: SubscriberStatus,
        source: str,
        now: datetime,
        mailbox: str | None = None,
    ) -> Subscriber: ...
    def pending_subscriber(
        self, email: str, *, mailbox: str, source: str, now: datetime
    ) -> Subscriber: ...
    def get_subscriber(self, email: str) -> Subscriber | None: ...
    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None: ...
    def get_subscriber_by_public_id(self, public_id: str) -> Subscriber | None: ...
    def set_status(self, subscriber_id: int, status: SubscriberStatus, now: datetime) -> None: ...
    def record_consent_request(
        self, subscriber_id: int, request: ConsentRequest, limits: MailLimits, now: datetime
    ) -> str: ...
    def confirm_consent(
        self,
        subscriber_id: int,
        *,
        now: datetime,
        ip: str,
        user_agent: str,
        requested_before: datetime,
        clear_hashes: Sequence[str] = (),
    ) -> str: ...
    def is_suppressed(self, hashes: Sequence[str]) -> bool: ...
    def import_subscribers(
        self, rows: Sequence[ImportRow], *, status: SubscriberStatus, source: str, now: datetime
    ) -> list[ImportVerdict]: ...
    def frequency_of(self, subscriber_id: int) -> Frequency | None: ...
    def set_frequency(self, subscriber_id: int, frequency: Frequency, now: datetime) -> None: ...
    def prune_pending(self, created_before: datetime) -> int: ...
    def export_subscriber(self, email: str) -> dict[str, Any] | None: ...
    def erase_subscriber(
        self, email: str, *, address_hash: str, now: datetime
    ) -> dict[str, int]: ...


@dataclass(frozen=True)
class Visitor:
    """Who made a request, as the consent record keeps it (empty for the CLI)."""

    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class SignupRequest:
    address: str
    source: str  # which form: "subscribe-page", "embed", "snippet", "cli", "expired-link"
    visitor: Visitor = Visitor()
    page_url: str = ""
    consent_version: str = ""  # the wording the server rendered for this form; "" = current
    at: datetime | None = None  # when it was asked (the web records it later); None = now
    frequency: Frequency = Frequency.DAILY  # every day, or the weekly round-up


class SignupResult(enum.StrEnum):
    SENT = "confirmation sent"
    ALREADY_ACTIVE = "already active; nothing sent"
    TOO_SOON = "a confirmation went out minutes ago; nothing sent"
    DAILY_LIMIT = "daily limit of confirmation mails reached; nothing sent"
    GONE = "the address was erased meanwhile; nothing sent"


class ConfirmResult(enum.StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_ACTIVE = "already-active"
    NO_REQUEST = "no-request"  # nothing open to confirm: the link was used or superseded
    UNKNOWN = "unknown"  # the subscriber no longer exists (erased)


@dataclass(frozen=True)
class Signup:
    subscriber: Subscriber
    outcome: SignupResult
    mail: ConfirmationMail | None = None


@dataclass(frozen=True)
class ConfirmLink:
    """A confirm token read: whom it names (None if forged or foreign) and when it was signed,
    which tells which of the subscriber's requests it answers."""

    subscriber: SubscriberRef | None
    issued_at: datetime | None = None
    expired: bool = False


class Subscriptions:
    """The subscription rules on a given store, transport and clock."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        transport: Transport,
        clock: Clock,
        sign: Signer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.clock = clock
        max_age = timedelta(days=settings.confirm_max_age_days)
        self.tokens = Tokens(settings.secret_keys, max_age, clock)
        self.mailer = ConfirmationMailer(settings, sign)

    # signing up

    def sign_up(self, request: SignupRequest) -> Signup:
        """Pending (or still suppressed) address plus a confirmation mail for the caller to send.

        AddressError for an address we cannot deliver to (nothing stored). An active address
        gets nothing, so asking again cannot be used to mail a reader who is already
        subscribed; but the work up to that decision is the same (see the module docstring).
        """
        email = self.normalize(request.address)
        now = request.at or self.clock()
        subscriber = self.store.pending_subscriber(
            email, mailbox=mailbox_key(email), source=request.source, now=now
        )
        return self._request_confirmation(subscriber, request, now)

    def normalize(self, raw: str) -> str:
        """The stored form of an address this deployment can deliver to, or AddressError."""
        return normalize_address(raw, smtputf8=self.settings.smtp.smtputf8)

    def renewal(self, subscriber: Subscriber, visitor: Visitor) -> SignupRequest:
        """The sign-up that answers "send me a new link" on an expired or used confirm link."""
        return SignupRequest(subscriber.email, "expired-link", visitor, at=self.clock())

    def rehearse(self, request: SignupRequest) -> None:
        """A sign-up's work without its effects, for a bot the honeypot caught.

        The same reads and the same mail built, nothing stored and nothing to send, so the bot
        cannot tell from our timing that it was caught.
        """
        email = self.normalize(request.address)
        found = self.store.get_subscriber(email)
        token = self.tokens.confirm(found.public_id if found else new_public_id())
        self.mailer.build(email, confirm_url(self.settings.base_url, token), self.clock())

    async def send(self, mail: ConfirmationMail | None) -> str:
        """Send one confirmation over its own connection; DeliveryError if refused.

        Without a mail the session is opened and closed all the same: the web app does that
        for every sign-up, so an address that gets no mail costs the same work as one that does.
        """
        connection = await self.transport.connect()
        try:
            if mail is None:
                return ""
            return await connection.send(self.settings.from_address, mail.recipient, mail.data)
        finally:
            await connection.close()

    def _request_confirmation(
        self, subscriber: Subscriber, request: SignupRequest, now: datetime
    ) -> Signup:
        link = confirm_url(self.settings.base_url, self.tokens.confirm(subscriber.public_id))
        mail = self.mailer.build(subscriber.email, link, now)
        web = self.settings.web
        consent = ConsentRequest(
            consent_version=request.consent_version or web.consent_version,
            source=request.source,
            page_url=request.page_url,
            ip=request.visitor.ip,
            user_agent=request.visitor.user_agent,
            mail_sha256=hashlib.sha256(mail.data).hexdigest(),
            mail_message_id=mail.message_id,
            frequency=request.frequency if self.settings.weekly.enabled else Frequency.DAILY,
        )
        limits = MailLimits(timedelta(minutes=web.resend_after_minutes), web.address_limit_per_day)
        result = self.store.record_consent_request(subscriber.id, consent, limits, now)
        outcome = {
            "recorded": SignupResult.SENT,
            "already-active": SignupResult.ALREADY_ACTIVE,
            "too-soon": SignupResult.TOO_SOON,
            "daily-limit": SignupResult.DAILY_LIMIT,
        }.get(result, SignupResult.GONE)
        return Signup(subscriber, outcome, mail if outcome is SignupResult.SENT else None)

    # links

    def read_confirm_link(self, token: str) -> ConfirmLink:
        """Verify a confirm token; an expired but genuine one still names its subscriber."""
        try:
            read = self.tokens.inspect_confirm(token)
        except TokenError:
            return ConfirmLink(None)
        return ConfirmLink(read.subscriber, read.issued_at, read.expired)

    def read_unsubscribe_link(self, token: str) -> SubscriberRef | None:
        try:
            return self.tokens.read_unsubscribe(token)
        except TokenError:
            return None

    def find(self, ref: SubscriberRef) -> Subscriber | None:
        """The subscriber a genuine link names, by public id (or, in old links, database id)."""
        if ref.public_id is not None:
            return self.store.get_subscriber_by_public_id(ref.public_id)
        if ref.legacy_id is not None:
            return self.store.get_subscriber_by_id(ref.legacy_id)
        return None

    def confirm(self, link: ConfirmLink, visitor: Visitor) -> ConfirmResult:
        """Record the confirmation and activate; repeating it changes nothing.

        The link confirms the newest open request made before it was signed, so an older link
        cannot answer a newer request (say, one made after the reader unsubscribed).
        """
        if link.subscriber is None or link.issued_at is None or link.expired:
            raise ValueError("confirm needs a valid, unexpired confirm link")
        subscriber = self.find(link.subscriber)
        if subscriber is None:
            return ConfirmResult.UNKNOWN
        result = self.store.confirm_consent(
            subscriber.id,
            now=self.clock(),
            ip=visitor.ip,
            user_agent=visitor.user_agent,
            requested_before=link.issued_at + TOKEN_STAMP_SLACK,
            clear_hashes=self.address_hashes(subscriber.email),
        )
        return ConfirmResult(result)

    def set_frequency(self, ref: SubscriberRef, frequency: Frequency) -> Subscriber | None:
        """Daily or weekly from the next issue on; None for a link that names nobody we mail."""
        subscriber = self.find(ref)
        if subscriber is None or subscriber.status.suppressed:
            return None
        self.store.set_frequency(subscriber.id, frequency, self.clock())
        return subscriber

    def unsubscribe(self, ref: SubscriberRef) -> Subscriber | None:
        """Stop all mail to the subscriber at once; a repeat or a bounced address is left as is."""
        subscriber = self.find(ref)
        if subscriber is not None and not subscriber.status.suppressed:
            self.store.set_status(subscriber.id, SubscriberStatus.UNSUBSCRIBED, self.clock())
        return subscriber

    # operators

    def add_without_confirmation(
        self, raw: str, status: SubscriberStatus, source: str
    ) -> Subscriber:
        """For imports and `add --active`: consent held elsewhere, so no mail; never erased ones."""
        email = self.normalize(raw)
        if self.store.is_suppressed(self.address_hashes(email)):
            raise SuppressedAddressError(email, "erased on request; only a new sign-up can return")
        return self.store.add_subscriber(
            email, status=status, source=source, now=self.clock(), mailbox=mailbox_key(email)
        )

    def export(self, raw: str) -> dict[str, Any]:
        """Everything stored about a person, consent records included, as JSON-ready data."""
        email = normalize_address(raw, smtputf8=True)  # find whatever may have been stored
        stored = self.store.export_subscriber(email)
        return {
            "address": email,
            "exported_at": self.clock().isoformat(),
            **(stored or {"subscriber": None, "consents": [], "deliveries": []}),
            "on_erased_list": self.store.is_suppressed(self.address_hashes(email)),
        }

    def erase(self, raw: str) -> dict[str, int]:
        """Delete the person's data; keep the keyed hash that refuses the address later."""
        email = normalize_address(raw, smtputf8=True)  # find whatever may have been stored
        newest = self.address_hashes(email)[0]
        return self.store.erase_subscriber(email, address_hash=newest, now=self.clock())

    def address_hashes(self, email: str) -> list[str]:
        """HMAC-SHA256 of the address under every signing key, the current key first.

        Checking all keys keeps an erased address refused after the key is rotated, for as
        long as the old key stays in NEWSLETTER_OLD_SECRET_KEYS.
        """
        message = SUPPRESSION_CONTEXT + email.encode("utf-8")
        return [
            hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
            for key in reversed(self.settings.secret_keys)
        ]
