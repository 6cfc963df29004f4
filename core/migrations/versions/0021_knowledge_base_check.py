"""knowledge-base check: an operator's "keep as it is" on an example the check flagged, and the intent a
flagged example is filed under on the review item that asks reviewers about it

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_examples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("question_key", sa.String(2000), nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("intent", sa.String(100), nullable=False),
        sa.Column("kept_by", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("question_key", "intent", name="uq_kept_examples_key_intent"),
    )
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("kb_intent", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("kb_intent")
    op.drop_table("kept_examples")
