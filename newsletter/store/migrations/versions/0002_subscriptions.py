"""Consent records of double opt-in, and the keyed hashes of erased addresses.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("consent_version", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("page_url", sa.Text, nullable=False, server_default=""),
        sa.Column("requested_at", STAMP, nullable=False),
        sa.Column("request_ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("request_user_agent", sa.Text, nullable=False, server_default=""),
        sa.Column("mail_sha256", sa.String(64), nullable=False),
        sa.Column("mail_message_id", sa.Text, nullable=False),
        sa.Column("confirmed_at", STAMP),
        sa.Column("confirm_ip", sa.String(64)),
        sa.Column("confirm_user_agent", sa.Text),
        sa.Column("closed_at", STAMP),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_consents_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_consents_subscriber_id_requested_at", "consents", ["subscriber_id", "requested_at"]
    )
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name="pk_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("consents")
