"""Batches: an issue's readers in ranges that processes claim, so several send one issue.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("low_id", sa.Integer, nullable=False),
        sa.Column("high_id", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.Text),
        sa.Column("claimed_until", STAMP),
        sa.Column("done_at", STAMP),
        sa.Column("created_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "number", name="pk_batches"),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name="fk_batches_issue_id_issues"),
    )


def downgrade() -> None:
    op.drop_table("batches")
