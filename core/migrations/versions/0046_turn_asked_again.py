"""turns.asked_again: how many times in a row a conversation's answer has been given when the customer asked
for it again (2: asked again once; ``bot.repetition``), on the turn that asked again; None for every turn
logged before and for every first answer

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("asked_again", sa.Integer(), nullable=True))
    again = sa.text("asked_again IS NOT NULL")  # a few turns in a hundred: a partial index by time
    op.create_index(
        "ix_turns_asked_again_created", "turns", ["created_at"], sqlite_where=again, postgresql_where=again
    )


def downgrade() -> None:
    op.drop_index("ix_turns_asked_again_created", table_name="turns")
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("asked_again")
