"""turns.language: the language a message the bot declined as off its topic was written in, when that is
confidently not the knowledge base's ("Wo ist meine Karte?": de; ``bot.language``); None for every turn
logged before and for every other turn

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("language", sa.String(8), nullable=True))
    other = sa.text("language IS NOT NULL")  # a few turns in a thousand: a partial index by time
    op.create_index(
        "ix_turns_language_created", "turns", ["created_at"], sqlite_where=other, postgresql_where=other
    )


def downgrade() -> None:
    op.drop_index("ix_turns_language_created", table_name="turns")
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("language")
