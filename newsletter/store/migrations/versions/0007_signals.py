"""Bounces and complaints reported after the send, webhook idempotency keys, feed fetches;
an index to find a delivery by its Message-ID.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])
    op.create_table(
        "signal_events",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("issue_id", sa.Integer),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("matched_by", sa.String(16), nullable=False, server_default=""),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("occurred_at", STAMP),
        sa.Column("received_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signal_events"),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name="fk_signal_events_issue_id_issues"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_signal_events_subscriber_id_subscribers",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("provider", "event_key", name="uq_signal_events_provider_event_key"),
    )
    op.create_index("ix_signal_events_issue_id_kind", "signal_events", ["issue_id", "kind"])
    op.create_index("ix_signal_events_received_at", "signal_events", ["received_at"])
    op.create_table(
        "webhook_keys",
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("request_key", sa.String(200), nullable=False),
        sa.Column("seen_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("provider", "request_key", name="pk_webhook_keys"),
    )
    op.create_index("ix_webhook_keys_seen_at", "webhook_keys", ["seen_at"])
    op.create_table(
        "feed_fetches",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("fetched_at", STAMP, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("articles", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_modified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_feed_fetches"),
    )
    op.create_index("ix_feed_fetches_url_fetched_at", "feed_fetches", ["url", "fetched_at"])
    op.create_index("ix_feed_fetches_fetched_at", "feed_fetches", ["fetched_at"])


def downgrade() -> None:
    op.drop_table("feed_fetches")
    op.drop_table("webhook_keys")
    op.drop_table("signal_events")
    op.drop_index("ix_deliveries_message_id", "deliveries")
