"""review_items.context: the turns of the question's conversation just before it, redacted, for reviewers
("Earlier in this conversation"): a follow-up such as "and how long does that take?" cannot be labelled
without them. Items made before this migration have none.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(
            sa.Column(
                "context",
                sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("context")
