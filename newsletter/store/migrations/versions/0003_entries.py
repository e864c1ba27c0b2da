"""Feed entries remembered: first seen (dates undated entries), link, articles carried over.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("newsletter", sa.Text, nullable=False),
        sa.Column("entry_id", sa.Text, nullable=False),
        sa.Column("link_key", sa.String(64), nullable=False, server_default=""),
        sa.Column("first_seen", STAMP, nullable=False),
        sa.Column("last_seen", STAMP, nullable=False),
        sa.Column("offered_on", sa.Date),
        sa.Column("article", sa.Text),
        sa.PrimaryKeyConstraint("newsletter", "entry_id", name="pk_entries"),
    )
    op.create_index("ix_entries_newsletter_link_key", "entries", ["newsletter", "link_key"])
    op.create_index("ix_entries_newsletter_offered_on", "entries", ["newsletter", "offered_on"])
    op.create_index("ix_entries_last_seen", "entries", ["last_seen"])


def downgrade() -> None:
    op.drop_table("entries")
