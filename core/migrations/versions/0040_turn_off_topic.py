"""turns.off_topic: the message was handed over as off the knowledge base's topic (below the model's
familiarity floor, ``bot.engine``); false for every turn logged before

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("off_topic", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("off_topic")
