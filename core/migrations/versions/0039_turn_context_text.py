"""turns.context_text: the earlier question a follow-up was read with ("is there a charge for that?" after
"can I top up with my card?", ``bot.follow_up``); None when the message was read alone

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.turn_search import kept_across_table_copy

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("context_text", sa.Text(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table: the search index's triggers are built again after.
    with kept_across_table_copy(op.get_bind()), op.batch_alter_table("turns") as batch:
        batch.drop_column("context_text")
