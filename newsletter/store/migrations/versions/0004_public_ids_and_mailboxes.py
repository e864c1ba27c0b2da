"""Subscribers get a random public id (what links name) and their mailbox (what limits count).

`public_id`: 16 random bytes in URL-safe base64, unique; links carried the sequential database
id before, which told anyone with two links the list's size and growth. Unsubscribe links in
mail already sent keep working (tokens read the old format), so existing rows only need an id.

`mailbox`: the address without its +tag, and without dots at Gmail; the per-address limits on
confirmation mails are counted per mailbox. The rule is written out here as it stood for this
revision (never imported), so a later change to it cannot change what this step did.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BATCH = 1000
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_key(address: str) -> str:
    local, _, domain = address.rpartition("@")
    base = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        domain = DOTLESS_DOMAINS[domain]
        base = base.replace(".", "") or base
    return f"{base}@{domain}"


def upgrade() -> None:
    # Plain ADD COLUMN (NOT NULL needs a default on SQLite) and a unique index: rebuilding the
    # table the SQLite way would drop it, and dropping it cascades to every delivery row.
    for name, size in (("public_id", 32), ("mailbox", 320)):
        op.add_column(
            "subscribers",
            sa.Column(name, sa.String(size), nullable=False, server_default=""),
        )
    conn = op.get_bind()
    update = sa.text("UPDATE subscribers SET public_id = :p, mailbox = :m WHERE id = :i")
    last = 0
    while True:
        rows = conn.execute(
            sa.text("SELECT id, email FROM subscribers WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            break
        conn.execute(
            update,
            [
                {"i": row.id, "p": secrets.token_urlsafe(16), "m": mailbox_key(row.email)}
                for row in rows
            ],
        )
        last = rows[-1].id
    op.create_index("ix_subscribers_public_id", "subscribers", ["public_id"], unique=True)
    op.create_index("ix_subscribers_mailbox", "subscribers", ["mailbox"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_mailbox", "subscribers")
    op.drop_index("ix_subscribers_public_id", "subscribers")
    op.drop_column("subscribers", "mailbox")
    op.drop_column("subscribers", "public_id")
