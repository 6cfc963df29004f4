"""reviewer guidance: a note for reviewers on each intent, the reviewing guidelines as versioned text that
operators edit, and the version of them each person last read

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("reviewer_note", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("guidelines_read", sa.Integer(), nullable=True))
    op.create_table(
        "review_guidelines",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("review_guidelines")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("guidelines_read")
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("reviewer_note")
