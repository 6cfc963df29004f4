"""turns.metadata_filter: the metadata filter a question was answered under (the widget's page, Azure's
filters), so an operator reading the conversation sees why only some intents were candidates;
turns.kept_from: the intent the bot would have answered with had there been no filter, when the filter kept
the question from it

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(
            sa.Column(
                "metadata_filter",
                sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql"),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("kept_from", sa.String(length=100), nullable=True))
        batch.create_index("ix_turns_kept_from", ["kept_from"])


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_kept_from")
        batch.drop_column("kept_from")
        batch.drop_column("metadata_filter")
