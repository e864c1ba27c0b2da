"""Subscribers, issues and their articles, the delivery ledger and feed state.

The tables as the store's first version made them, written out in full: a revision describes
its own step and never reads today's `schema.py`, so a column added later cannot appear early.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.Column("confirmed_at", STAMP),
        sa.Column("unsubscribed_at", STAMP),
        sa.Column("bounce_count", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email", name="uq_subscribers_email"),
    )
    op.create_index("ix_subscribers_status_id", "subscribers", ["status", "id"])
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("newsletter", sa.Text, nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cutoff", STAMP, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("preheader", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("sent_at", STAMP),
        sa.Column("claimed_by", sa.Text),
        sa.Column("claimed_until", STAMP),
        sa.PrimaryKeyConstraint("id", name="pk_issues"),
        sa.UniqueConstraint("newsletter", "issue_date", name="uq_issues_newsletter_issue_date"),
    )
    op.create_table(
        "issue_articles",
        sa.Column("newsletter", sa.Text, nullable=False),
        sa.Column("article_id", sa.Text, nullable=False),
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("newsletter", "article_id", name="pk_issue_articles"),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name="fk_issue_articles_issue_id_issues"
        ),
    )
    op.create_index("ix_issue_articles_issue_id", "issue_articles", ["issue_id"])
    op.create_table(
        "deliveries",
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("message_id", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("next_attempt", STAMP),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "subscriber_id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name="fk_deliveries_issue_id_issues"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_deliveries_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"])
    op.create_table(
        "feed_state",
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("permanent_url", sa.Text),
        sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("url", name="pk_feed_state"),
    )


def downgrade() -> None:
    for table in ("feed_state", "deliveries", "issue_articles", "issues", "subscribers"):
        op.drop_table(table)
