"""Double opt-in, unsubscribe, export and erasure: the subscription rules, shared by web and CLI.

Handed its store, transport and clock like the pipeline, so the web app, the CLI and the tests
run exactly the same rules. Nothing here knows HTTP; the web layer decides what to show.

The rules (email standards C, D, G, I):
- A sign-up never activates an address: it records a consent request and sends one
  confirmation mail with a signed, expiring link. Only confirming makes the address active.
- Per address at most one mail per `resend_after_minutes` and `address_limit_per_day` mails a
  day, counted from the consent records, so no one can flood someone else's inbox.
- An unsubscribed or bounced address stays suppressed until a *new* request is confirmed.
- An erased address leaves only an HMAC of itself (`address_hashes`), keyed with the signing
  keys, so it is refused by imports without being stored in the clear.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from itsdangerous import BadData, URLSafeTimedSerializer

from .addresses import normalize_address
from .config import Settings
from .confirm_mail import ConfirmationMail, ConfirmationMailer
from .errors import SuppressedAddressError, TokenError, TokenExpiredError
from .models import ConsentRequest, MailLimits, Subscriber, SubscriberStatus
from .ports import Transport
from .tokens import CONFIRM_SALT, Tokens, confirm_url

Clock = Callable[[], datetime]
SUPPRESSION_CONTEXT = b"ree-newsletter.suppression:"
# A token's stamp is whole seconds, taken just after its request was recorded.
TOKEN_STAMP_SLACK = timedelta(seconds=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


class SubscriptionStore(Protocol):
    """What the subscription rules need from the store (`store.SqlStore` implements it)."""

    def add_subscriber(
        self, email: str, *, status: SubscriberStatus, source: str, now: datetime
    ) -> Subscriber: ...
    def get_subscriber(self, email: str) -> Subscriber | None: ...
    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None: ...
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
    consent_version: str = ""  # the version of the wording the form showed; "" = current
    at: datetime | None = None  # when it was asked (the web records it later); None = now


class SignupOutcome(enum.StrEnum):
    SENT = "confirmation sent"
    ALREADY_ACTIVE = "already active; nothing sent"
    TOO_SOON = "a confirmation went out minutes ago; nothing sent"
    DAILY_LIMIT = "daily limit of confirmation mails reached; nothing sent"
    GONE = "the address was erased meanwhile; nothing sent"


class ConfirmOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_ACTIVE = "already-active"
    NO_REQUEST = "no-request"  # nothing open to confirm: the link was used or superseded
    UNKNOWN = "unknown"  # the subscriber no longer exists (erased)


@dataclass(frozen=True)
class Signup:
    subscriber: Subscriber
    outcome: SignupOutcome
    mail: ConfirmationMail | None = None


@dataclass(frozen=True)
class ConfirmLink:
    """A confirm token read: the subscriber it names (None if forged or foreign) and when it
    was signed, which tells which of the subscriber's requests it answers."""

    subscriber_id: int | None
    issued_at: datetime | None = None
    expired: bool = False


class Subscriptions:
    """The subscription rules on a given store, transport and clock."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        transport: Transport,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.clock = clock
        max_age = timedelta(days=settings.confirm_max_age_days)
        self.tokens = Tokens(settings.secret_keys, max_age, clock=lambda: clock().timestamp())
        self.mailer = ConfirmationMailer(settings)

    # signing up

    def sign_up(self, request: SignupRequest) -> Signup:
        """Pending (or still suppressed) address plus a confirmation mail for the caller to send.

        AddressError for an invalid address. An active address gets nothing, so asking again
        cannot be used to mail a reader who is already subscribed.
        """
        email = normalize_address(request.address)
        now = request.at or self.clock()
        subscriber = self.store.get_subscriber(email) or self._add_pending(email, request, now)
        if subscriber.status is SubscriberStatus.ACTIVE:
            return Signup(subscriber, SignupOutcome.ALREADY_ACTIVE)
        return self._request_confirmation(subscriber, request, now)

    def renewal(self, subscriber: Subscriber, visitor: Visitor) -> SignupRequest:
        """The sign-up that answers "send me a new link" on an expired or used confirm link."""
        return SignupRequest(subscriber.email, "expired-link", visitor, at=self.clock())

    async def send(self, mail: ConfirmationMail) -> str:
        """Send one confirmation over its own connection; DeliveryError if refused."""
        connection = await self.transport.connect()
        try:
            return await connection.send(self.settings.from_address, mail.recipient, mail.data)
        finally:
            await connection.close()

    def _add_pending(self, email: str, request: SignupRequest, now: datetime) -> Subscriber:
        try:
            return self.store.add_subscriber(
                email, status=SubscriberStatus.PENDING, source=request.source, now=now
            )
        except SuppressedAddressError:  # it appeared, suppressed, since we looked
            found = self.store.get_subscriber(email)
            assert found is not None
            return found

    def _request_confirmation(
        self, subscriber: Subscriber, request: SignupRequest, now: datetime
    ) -> Signup:
        link = confirm_url(self.settings.base_url, self.tokens.confirm(subscriber.id))
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
        )
        limits = MailLimits(timedelta(minutes=web.resend_after_minutes), web.address_limit_per_day)
        result = self.store.record_consent_request(subscriber.id, consent, limits, now)
        outcome = {
            "recorded": SignupOutcome.SENT,
            "too-soon": SignupOutcome.TOO_SOON,
            "daily-limit": SignupOutcome.DAILY_LIMIT,
        }.get(result, SignupOutcome.GONE)
        return Signup(subscriber, outcome, mail if outcome is SignupOutcome.SENT else None)

    # links

    def read_confirm_link(self, token: str) -> ConfirmLink:
        """Verify a confirm token; an expired but genuine one still names its subscriber."""
        try:
            self.tokens.read_confirm(token)
            expired = False
        except TokenExpiredError:
            expired = True
        except TokenError:
            return ConfirmLink(None)
        stamped = self._stamped(token)
        if stamped is None:
            return ConfirmLink(None)
        return ConfirmLink(stamped[0], stamped[1], expired)

    def _stamped(self, token: str) -> tuple[int, datetime] | None:
        """The id in a genuine confirm token and when it was signed, whatever its age.

        `Tokens` says whether a token is valid or expired but neither whose an expired token is
        nor when a token was signed, so the signature is checked again here with the same keys
        and salt, without an age limit: only after `Tokens` has accepted the token as ours.
        """
        serializer = URLSafeTimedSerializer(list(self.settings.secret_keys), salt=CONFIRM_SALT)
        try:
            value, signed = serializer.loads(token, return_timestamp=True)
        except BadData:
            return None
        if type(value) is not int or value < 0:
            return None
        return value, signed.astimezone(UTC)

    def read_unsubscribe_link(self, token: str) -> int | None:
        try:
            return self.tokens.read_unsubscribe(token)
        except TokenError:
            return None

    def confirm(self, link: ConfirmLink, visitor: Visitor) -> ConfirmOutcome:
        """Record the confirmation and activate; repeating it changes nothing.

        The link confirms the newest open request made before it was signed, so an older link
        cannot answer a newer request (say, one made after the reader unsubscribed).
        """
        if link.subscriber_id is None or link.issued_at is None or link.expired:
            raise ValueError("confirm needs a valid, unexpired confirm link")
        subscriber = self.store.get_subscriber_by_id(link.subscriber_id)
        if subscriber is None:
            return ConfirmOutcome.UNKNOWN
        result = self.store.confirm_consent(
            subscriber.id,
            now=self.clock(),
            ip=visitor.ip,
            user_agent=visitor.user_agent,
            requested_before=link.issued_at + TOKEN_STAMP_SLACK,
            clear_hashes=self.address_hashes(subscriber.email),
        )
        return ConfirmOutcome(result)

    def unsubscribe(self, subscriber_id: int) -> Subscriber | None:
        """Stop all mail to the subscriber at once; a repeat or a bounced address is left as is."""
        subscriber = self.store.get_subscriber_by_id(subscriber_id)
        if subscriber is not None and not subscriber.status.suppressed:
            self.store.set_status(subscriber_id, SubscriberStatus.UNSUBSCRIBED, self.clock())
        return subscriber

    # operators

    def add_without_confirmation(
        self, raw: str, status: SubscriberStatus, source: str
    ) -> Subscriber:
        """For imports and `add --active`: consent held elsewhere, so no mail; never erased ones."""
        email = normalize_address(raw)
        if self.store.is_suppressed(self.address_hashes(email)):
            raise SuppressedAddressError(email, "erased on request; only a new sign-up can return")
        return self.store.add_subscriber(email, status=status, source=source, now=self.clock())

    def export(self, raw: str) -> dict[str, Any]:
        """Everything stored about a person, consent records included, as JSON-ready data."""
        email = normalize_address(raw)
        stored = self.store.export_subscriber(email)
        return {
            "address": email,
            "exported_at": self.clock().isoformat(),
            **(stored or {"subscriber": None, "consents": [], "deliveries": []}),
            "on_erased_list": self.store.is_suppressed(self.address_hashes(email)),
        }

    def erase(self, raw: str) -> dict[str, int]:
        """Delete the person's data; keep the keyed hash that refuses the address later."""
        email = normalize_address(raw)
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
