"""turns.page: the web page each widget message was written from (core.pages), with an index by time for the
install page's table of the pages customers ask from

Revision ID: 0059
Revises: 0058
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0059"
down_revision = "0058"
branch_labels = None
depends_on = None

WHERE = "page IS NOT NULL"


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a batch operation may copy SQLite's table, and with it drop the
    # triggers that keep the turn search's index (0030) up to date.
    op.add_column("turns", sa.Column("page", sa.String(500), nullable=True))
    op.create_index(
        "ix_turns_page_created",
        "turns",
        ["created_at", "page", "status", "served_by", "helpful", "conversation_id"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_turns_page_created", table_name="turns")
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("page")
