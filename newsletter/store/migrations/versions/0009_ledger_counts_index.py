"""An index on the ledger by (issue, status): `status` and the dashboard count a million rows
from the index alone (SQLite 467 -> 170 ms at 1,000,000 rows) instead of reading the table.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_issue_id_status", "deliveries", ["issue_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_issue_id_status", "deliveries")
