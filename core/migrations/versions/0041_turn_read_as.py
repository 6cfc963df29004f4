"""turns.read_as: the message as the model read it when misspelt words were read as the knowledge base's own
("my crad hasnt arived" -> "my card hasnt arrived", ``bot.spelling``); None when it was read as typed

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("read_as", sa.Text(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("read_as")
