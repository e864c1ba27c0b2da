"""Where the round of an issue being planned has got to (`issues.plan_cursor`, the last
subscriber id already cut into a batch; NULL when no round is being planned). A round is now
planned a few batches at a time as the senders need them, instead of the whole list before the
first message (SQLite, 1,000,000 readers: 0.6-1.7 s before anything went out).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issues", sa.Column("plan_cursor", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("plan_cursor")
