"""Plain data passed between the rooms of the engine.

Nothing here does I/O; every type is frozen so that a value handed from one step to the next
cannot be changed behind the back of the step that made it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

# Stand-ins for the per-reader values in a rendered digest. Plain word characters only, so that
# autoescaping, premailer and lxml's URL-attribute escaping all leave them untouched.
EMAIL_PLACEHOLDER = "__READER_EMAIL__"
UNSUBSCRIBE_URL_PLACEHOLDER = "__UNSUBSCRIBE_URL__"
PERSONAL_FIELDS = (EMAIL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER)


class SubscriberStatus(enum.StrEnum):
    """Lifecycle of an address. Only ACTIVE ones receive digests."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"

    @property
    def suppressed(self) -> bool:
        """An address that left or bounced must never be mailed again without fresh consent."""
        return self in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


class IssueStatus(enum.StrEnum):
    SENDING = "sending"
    SENT = "sent"


class DeliveryStatus(enum.StrEnum):
    """Outcome of one issue for one subscriber (the ledger)."""

    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Article:
    """One entry of a feed after clean-up; all HTML fields are already sanitized."""

    id: str
    title: str
    link: str
    author: str
    published: datetime
    summary_html: str
    summary_text: str
    content_html: str
    source: str
    highlights: tuple[str, ...] = ()
    dated_by_feed: bool = True


@dataclass(frozen=True)
class FeedState:
    """What a feed told us last time, for conditional GET and 301/410 handling."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class FeedReport:
    """How one feed fared in a run: the operator reads these."""

    name: str
    url: str
    ok: bool
    articles: int = 0
    not_modified: bool = False
    error: str | None = None
    note: str | None = None  # worth telling the operator though the feed worked (a 301)


@dataclass(frozen=True)
class FeedBatch:
    """The result of collecting every configured feed once."""

    articles: tuple[Article, ...]
    reports: tuple[FeedReport, ...]
    states: tuple[FeedState, ...]


@dataclass(frozen=True)
class Digest:
    """One rendered issue: the same for every reader until the personal pieces go in.

    The HTML and text contain the placeholders of `PERSONAL_FIELDS` where the reader's own
    values belong; compose substitutes them per recipient.
    """

    subject: str
    preheader: str
    html: str
    text: str
    article_ids: tuple[str, ...]


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    status: SubscriberStatus
    created_at: datetime
    updated_at: datetime
    source: str = ""


@dataclass(frozen=True)
class Issue:
    """A daily issue as stored: the digest is frozen at creation so a resumed send is identical."""

    id: int
    newsletter: str
    issue_date: date
    status: IssueStatus
    cutoff: datetime
    digest: Digest
    created_at: datetime
    sent_at: datetime | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What the server said about one message, recorded in the ledger right after its reply."""

    status: DeliveryStatus
    detail: str = ""
    message_id: str = ""
    attempts: int = 1
    next_attempt: datetime | None = None
    code: int = 0  # the SMTP reply code of the last answer, 0 if there was none


@dataclass(frozen=True)
class Recipient:
    """The per-person values that go into a prebuilt message."""

    subscriber_id: int
    email: str
    unsubscribe_url: str
    unsubscribe_mailto: str | None = None


@dataclass(frozen=True)
class ConsentRequest:
    """One sign-up's proof of consent (GDPR Art. 7(1)), stored with its confirmation mail."""

    consent_version: str
    source: str
    page_url: str
    ip: str
    user_agent: str
    mail_sha256: str
    mail_message_id: str


@dataclass(frozen=True)
class MailLimits:
    """How often one address may be sent a confirmation mail (no inbox flooding)."""

    resend_after: timedelta
    per_day: int


@dataclass
class RunSummary:
    """What one run did, for the CLI to print and for cron's exit status."""

    issue_date: date
    dry_run: bool
    articles: int = 0
    recipients: int = 0
    message_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    feeds: tuple[FeedReport, ...] = ()
    note: str = ""
    output_files: tuple[str, ...] = ()
    stopped: bool = False  # SIGTERM or a lost lease ended the send early: later runs resume
