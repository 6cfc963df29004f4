"""turns.ruled_out: the intent the customer said the message is not about ("I don't want to close my account,
I just want to freeze my card"), left out of the answer (``bot.negation``); None for every turn logged before

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("ruled_out", sa.String(100), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("ruled_out")
