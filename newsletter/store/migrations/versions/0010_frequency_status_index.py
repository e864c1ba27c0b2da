"""An index on subscribers by (frequency, status): every run's plan counts the active readers
who chose the weekly round-up while it is off (`lifecycle.plan`), which read the whole table
before (SQLite, 1,000,000 readers: 140-290 ms).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subscribers_frequency_status", "subscribers", ["frequency", "status"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_frequency_status", "subscribers")
