"""turns.suggested, turns.chosen_intent, turns.chosen_at: the chips a reply showed, and the "did you mean"
choice the customer clicked (implicit feedback for review and the overview)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(
            sa.Column(
                "suggested",
                sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql"),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("chosen_intent", sa.String(100), nullable=True))
        batch.add_column(sa.Column("chosen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("chosen_at")
        batch.drop_column("chosen_intent")
        batch.drop_column("suggested")
