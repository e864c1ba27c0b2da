"""Daily or weekly: each reader's frequency, and which readers an issue is for.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    frequency = sa.Column("frequency", sa.String(16), nullable=False, server_default="daily")
    op.add_column("subscribers", frequency)
    op.add_column(
        "issues", sa.Column("kind", sa.String(16), nullable=False, server_default="daily")
    )


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("frequency")
