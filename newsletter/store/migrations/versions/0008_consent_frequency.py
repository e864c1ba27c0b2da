"""The frequency a reader chose, kept with the consent it was given in.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "consents", sa.Column("frequency", sa.String(16), nullable=False, server_default="daily")
    )


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("frequency")
