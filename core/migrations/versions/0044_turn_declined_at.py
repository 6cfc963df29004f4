"""turns.declined_at: when the customer answered a turn's "did you mean" (or its choices after "that's wrong")
with "none of these" (``bot.choice``); None for every turn logged before and for every other turn

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("declined_at", sa.DateTime(timezone=True), nullable=True))
    declined = sa.text("declined_at IS NOT NULL")  # a few turns in a thousand: a partial index
    op.create_index(
        "ix_turns_declined_at", "turns", ["declined_at"], sqlite_where=declined, postgresql_where=declined
    )


def downgrade() -> None:
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    op.drop_index("ix_turns_declined_at", table_name="turns")
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("declined_at")
