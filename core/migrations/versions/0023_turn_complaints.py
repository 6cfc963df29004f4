"""turns.rated_turn_id: on a typed "that's wrong", the answered turn it rated unhelpful (the customer's chip
click after it becomes review evidence for that turn's question)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("rated_turn_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_turns_rated_turn_id_turns", "turns", ["rated_turn_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_turns_rated_turn_id", ["rated_turn_id"])


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_rated_turn_id")
        batch.drop_constraint("fk_turns_rated_turn_id_turns", type_="foreignkey")
        batch.drop_column("rated_turn_id")
