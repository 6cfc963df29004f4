"""judgements.needs_context: a reviewer shown the turns before a question says it is clear only with them;
when most of an item's reviewers say so, it resolves without training pairs (the bot reads each message alone,
so "and how long does that take?" filed under one intent would teach it a guess)

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("judgements") as batch:
        batch.add_column(sa.Column("needs_context", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgements") as batch:
        batch.drop_column("needs_context")
