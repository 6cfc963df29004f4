"""turns.vague: a keyword message ("pin") the model would have answered, asked about instead because the
knowledge base uses its words for several intents (``bot.keywords``); false for every turn logged before

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("vague", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("vague")
