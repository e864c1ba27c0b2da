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


def _status() -> sa.String:
    return sa.String(16)


schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)

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
    # Serves both the audience query (status = active, id > last) and count_by_status.
    sa.Index(None, "status", "id"),
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
    # The run sending the issue holds a lease it renews; a crashed run's lease runs out.
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_until", UtcDateTime),
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

# Proof of consent (email standards G.40): one row per confirmation mail sent. The request half
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
