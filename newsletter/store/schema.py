"""The store's tables, defined once so the queries in `store` and the DDL in `migrations` agree.

Portable SQLAlchemy Core only: every definition here must mean the same thing on SQLite and
PostgreSQL. Constraint names follow `NAMING_CONVENTION` so a later migration can refer to them
by name on either database.

Statuses are plain strings without CHECK constraints on purpose: adding a status later is then a
code change, not a table rebuild (SQLite cannot alter a CHECK constraint in place).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultExecutionContext

from newsletter.models import new_public_id

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps.

    SQLite stores no zone, so values are written as naive UTC and UTC is re-attached on read;
    PostgreSQL uses ``timestamptz`` and its values are converted to UTC on read. Naive input is
    refused: guessing its zone would silently shift every timestamp by the server's offset.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise TypeError(f"naive datetime {value.isoformat()} given to the store; use UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _mailbox_default(context: DefaultExecutionContext) -> str:
    """Without a mailbox from the caller, the address is its own (raw SQL must set both)."""
    parameters = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return str(parameters["email"])


def _status() -> sa.String:
    return sa.String(16)


subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("status", _status(), nullable=False),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("confirmed_at", UtcDateTime),
    sa.Column("unsubscribed_at", UtcDateTime),
    # Hard "no such user" refusals so far; at the configured threshold the address is bounced.
    sa.Column("bounce_count", sa.Integer, nullable=False, server_default="0"),
    # The subscriber's name in every link (models.new_public_id): random, so a link tells
    # nothing about how many subscribers there are or in which order they came.
    # (The "" server defaults only let revision 0004 add the columns to existing rows; an
    # insert through SQLAlchemy fills both from the Python defaults, raw SQL must set them.)
    sa.Column("public_id", sa.String(32), nullable=False, server_default="", default=new_public_id),
    # Where the address is delivered (addresses.mailbox_key): "a.nn+x@gmail.com" is
    # "ann@gmail.com". The per-address limits on confirmation mails count per mailbox.
    sa.Column(
        "mailbox", sa.String(320), nullable=False, server_default="", default=_mailbox_default
    ),
    # "daily" or "weekly": which issues the reader gets (the reader chooses; see preferences).
    sa.Column("frequency", sa.String(16), nullable=False, server_default="daily"),
    # Serves both the audience query (status = active, id > last) and count_by_status.
    sa.Index(None, "status", "id"),
    sa.Index(None, "public_id", unique=True),
    sa.Index(None, "mailbox"),
    sa.Index(None, "frequency", "status"),  # readers stranded by [weekly] off, counted (0010)
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("newsletter", sa.Text, nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("status", _status(), nullable=False),
    sa.Column("cutoff", UtcDateTime, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime),
    # Whose readers get it: "daily" or "weekly" (each stream has its own newsletter name).
    sa.Column("kind", sa.String(16), nullable=False, server_default="daily"),
    # Unused since batches (0006) took over the lease; kept so SQLite needs no table rebuild.
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_until", UtcDateTime),
    # The round being planned (store.batches): the last subscriber id already cut into a batch;
    # NULL when no round is being planned.
    sa.Column("plan_cursor", sa.Integer),
    # One issue per newsletter and day: this is what makes two concurrent runs safe.
    sa.UniqueConstraint("newsletter", "issue_date"),
)

issue_articles = sa.Table(
    "issue_articles",
    metadata,
    sa.Column("newsletter", sa.Text, primary_key=True),
    sa.Column("article_id", sa.Text, primary_key=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey(issues.c.id), nullable=False),
    # Digest order, so get_issue rebuilds article_ids exactly as they were created.
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index(None, "issue_id"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey(issues.c.id), primary_key=True),
    # Erasing a subscriber takes their ledger rows along instead of being blocked by them.
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey(subscribers.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("status", _status(), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("message_id", sa.Text, nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("next_attempt", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index(None, "subscriber_id"),
    sa.Index(None, "issue_id", "status"),  # counts by outcome from the index alone (0009)
    # A bounce or complaint report names our Message-ID: this finds its reader and issue.
    sa.Index(None, "message_id"),
)

feed_state = sa.Table(
    "feed_state",
    metadata,
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("permanent_url", sa.Text),
    sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Proof of consent (GDPR Art. 7(1)): one row per confirmation mail sent. The request half
# is written when the mail goes out; the confirmation half when the reader presses the button.
consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey(subscribers.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("consent_version", sa.String(64), nullable=False),
    # Which form ("subscribe-page", "embed", "cli", ...) and the page it was on, if known.
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("page_url", sa.Text, nullable=False, server_default=""),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("request_ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("request_user_agent", sa.Text, nullable=False, server_default=""),
    # SHA-256 of the exact bytes of the confirmation mail, and its Message-ID.
    sa.Column("mail_sha256", sa.String(64), nullable=False),
    sa.Column("mail_message_id", sa.Text, nullable=False),
    # What the reader asked for on the form, "daily" or "weekly"; confirming applies it.
    sa.Column("frequency", sa.String(16), nullable=False, server_default="daily"),
    sa.Column("confirmed_at", UtcDateTime),
    sa.Column("confirm_ip", sa.String(64)),
    sa.Column("confirm_user_agent", sa.Text),
    # Set on requests left open when a newer one was confirmed: they can no longer confirm.
    sa.Column("closed_at", UtcDateTime),
    # Serves the per-address limits (recent requests) and the newest open request.
    sa.Index(None, "subscriber_id", "requested_at"),
)

# Erased addresses: only a keyed hash (HMAC-SHA256 under the signing key) stays, so the address
# can be recognised and refused again without being stored.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Every feed entry seen, by the id selection gives it: when it was first seen (the date of an
# undated entry), its link (a hash of the cleaned link, so a syndicated copy under another guid
# is recognised once either was sent), and, once an issue's selection offered it, the article
# itself, so an article left out of a full issue is carried to the next even if its feed has
# dropped it by then. "Sent" is not stored here: it is `issue_articles`, joined on the id.
entries = sa.Table(
    "entries",
    metadata,
    sa.Column("newsletter", sa.Text, primary_key=True),
    sa.Column("entry_id", sa.Text, primary_key=True),
    sa.Column("link_key", sa.String(64), nullable=False, server_default=""),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    # The first issue date whose selection offered the article, and the article as offered.
    sa.Column("offered_on", sa.Date),
    sa.Column("article", sa.Text),
    sa.Index(None, "newsletter", "link_key"),
    sa.Index(None, "newsletter", "offered_on"),
    sa.Index(None, "last_seen"),
)

# An issue's readers handed out in ranges of subscriber ids, so that any number of processes on
# any number of hosts send one issue together: each claims a range with a lease it renews, and
# a dead process's range is taken over. A round covers every reader still needing the issue
# when it is planned; a later run plans the next round (deferred readers, leftovers).
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey(issues.c.id), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("low_id", sa.Integer, nullable=False),  # exclusive
    sa.Column("high_id", sa.Integer, nullable=False),  # inclusive
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_until", UtcDateTime),
    sa.Column("done_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Bounces and complaints reported after the send (provider webhooks, feedback-loop reports,
# bounce mail), one row per report and reader. `event_key` is the provider's own event id (or a
# hash of the report), unique per provider, so a retried or replayed report is recorded once.
# No address is kept: the reader is `subscriber_id` (NULL when the report matched nobody, or
# after the reader was erased) and `detail` has addresses scrubbed.
signal_events = sa.Table(
    "signal_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("event_key", sa.String(200), nullable=False),
    sa.Column("kind", _status(), nullable=False),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey(issues.c.id)),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey(subscribers.c.id, ondelete="SET NULL")),
    # How the reader was found: "message-id", "verp", or "" (unmatched: nothing was changed).
    sa.Column("matched_by", _status(), nullable=False, server_default=""),
    # What was done: complaint (unsubscribed), bounced, counted, soft, unmatched.
    sa.Column("outcome", _status(), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("occurred_at", UtcDateTime),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("provider", "event_key"),
    sa.Index(None, "issue_id", "kind"),
    sa.Index(None, "received_at"),
)

# Request-level idempotency: an SNS MessageId (SNS retries reuse it) or a Mailgun token (a
# second use is a replay). Kept for `webhook_keys_days`, longer than any freshness window.
webhook_keys = sa.Table(
    "webhook_keys",
    metadata,
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("request_key", sa.String(200), primary_key=True),
    sa.Column("seen_at", UtcDateTime, nullable=False),
    sa.Index(None, "seen_at"),
)

# How each feed fared in each real run, for the dashboard's feed health (and its failures).
feed_fetches = sa.Table(
    "feed_fetches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("fetched_at", UtcDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("articles", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_modified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Index(None, "url", "fetched_at"),
    sa.Index(None, "fetched_at"),
)
