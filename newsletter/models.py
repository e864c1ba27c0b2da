"""Plain data passed between the rooms of the engine.

Nothing here does I/O; every type is frozen so that a value handed from one step to the next
cannot be changed behind the back of the step that made it.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

# Stand-ins for the per-reader values in a rendered digest. Plain word characters only, so that
# autoescaping, premailer and lxml's URL-attribute escaping all leave them untouched.
EMAIL_PLACEHOLDER = "__READER_EMAIL__"
UNSUBSCRIBE_URL_PLACEHOLDER = "__UNSUBSCRIBE_URL__"
PREFERENCES_URL_PLACEHOLDER = "__PREFERENCES_URL__"
PERSONAL_FIELDS = (EMAIL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, PREFERENCES_URL_PLACEHOLDER)

# Bounds on what one article may bring into a digest, applied when a feed is read and again
# when the digest is rendered: one absurd entry must not push the issue over the size limit.
TITLE_MAX = 300  # characters; cut at a word with "…"
LINK_MAX = 2_000  # characters; a longer link is dropped and the article shown unlinked


def storable(text: str) -> str:
    """Text from outside as both databases keep it. PostgreSQL refuses a NUL in text, and
    neither encodes a lone surrogate (how undecodable bytes arrive from a relay's reply or a
    mail header, and what JSON's \\udcff gives): one such string failed a whole transaction,
    a group of ledger rows or a provider's webhook request, and so lost the rest with it."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def new_public_id() -> str:
    """A subscriber's name in every link we mail: 16 random bytes as 22 URL-safe characters.

    Random rather than derived from the database id, so a link tells nothing about how many
    subscribers there are or in which order they came (see `tokens`).
    """
    return secrets.token_urlsafe(16)


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
    """Where an issue stands; only SENDING issues are ever sent to again.

    SENT: every reader was reached or refused. CLOSED: its retry deadline (or the operator)
    ended it while some readers were still deferred: they are EXPIRED in the ledger. ABANDONED:
    it reached nobody and a later issue carries its articles instead, or the operator closed a
    day that never went out; its articles count as not sent.
    """

    SENDING = "sending"
    SENT = "sent"
    CLOSED = "closed"
    ABANDONED = "abandoned"

    @property
    def finished(self) -> bool:
        return self is not IssueStatus.SENDING


class Frequency(enum.StrEnum):
    """How often a reader gets mail, and which stream an issue belongs to."""

    DAILY = "daily"
    WEEKLY = "weekly"  # a round-up of the week's top stories, on the configured weekday


class DeliveryStatus(enum.StrEnum):
    """Outcome of one issue for one subscriber (the ledger)."""

    SENT = "sent"
    DEFERRED = "deferred"  # a transient failure: later runs retry until the issue's deadline
    FAILED = "failed"  # a permanent refusal, or the message could not be made for this reader
    SKIPPED = "skipped"  # left the list while the issue was going out
    EXPIRED = "expired"  # still deferred when the retry deadline ended the issue


@dataclass(frozen=True)
class Image:
    """An article's picture as its feed named it: https, on the site's own server, never fetched.

    The digest points at this URL directly (no proxy, no tracking pixel). Width and height are
    the pixels the feed declared; 0 when it said nothing, and the renderer assumes a size.
    """

    url: str
    width: int
    height: int
    alt: str  # the feed's alt text, else the article's title


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
    image: Image | None = None
    categories: tuple[str, ...] = ()  # the feed's categories (WordPress: categories, then tags)
    words: int = 0  # length of the full article, for its reading time; 0 when not known


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
    note: str | None = None  # worth telling though the feed worked: a 301, a dropped link, a bound
    # How long fetching and reading it took (for the metrics); not part of what it said.
    seconds: float = field(default=0.0, compare=False)


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
    # The subscriber's name in every link we mail (random: `new_public_id`).
    public_id: str = ""


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
    kind: Frequency = Frequency.DAILY  # whose readers get it: the daily or the weekly ones


@dataclass(frozen=True)
class Batch:
    """A range of an issue's readers by subscriber id, (low, high], that one process sends."""

    issue_id: int
    number: int
    low: int
    high: int


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
    preferences_url: str = ""  # "" (a copy for someone not on the list): the unsubscribe URL


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
    frequency: Frequency = Frequency.DAILY  # what the reader asked for: daily or weekly


@dataclass(frozen=True)
class MailLimits:
    """How often one address may be sent a confirmation mail (no inbox flooding)."""

    resend_after: timedelta
    per_day: int


class ImportResult(enum.StrEnum):
    """What an import did with one line (the order is the order of the operator's tally)."""

    ADDED = "added"
    UPDATED = "updated"  # a pending address made active by `import --active`
    UNCHANGED = "unchanged"
    REFUSED = "refused"  # not an address we can deliver to, or a line that cannot be read
    SUPPRESSED = "suppressed"  # unsubscribed, bounced or erased: kept as it is


@dataclass(frozen=True)
class ImportVerdict:
    result: ImportResult
    reason: str = ""  # for REFUSED and SUPPRESSED: what the operator is told


@dataclass(frozen=True)
class ImportRow:
    """One imported address as the store needs it: the stored form, where it is delivered,
    and its keyed hashes under every secret key (the erased list holds only those)."""

    email: str
    mailbox: str
    hashes: tuple[str, ...]


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
    left_out: tuple[str, ...] = ()  # what became of the articles the digest had no room for
    output_files: tuple[str, ...] = ()
    stopped: bool = False  # SIGTERM, a lost lease or a store fault ended it early: runs resume
    not_sent: bool = False  # nothing went out that should have (every feed failed, held issue)
    status: IssueStatus | None = None  # the issue's state when the run ended (None: dry run)
    unreached: int = 0  # readers of the issue without a sent outcome when the run ended
