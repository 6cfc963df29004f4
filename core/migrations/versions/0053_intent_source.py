"""intents.source: the FAQ page, help document or web address an intent was imported from, so that importing
it again removes the questions it no longer has

Revision ID: 0053
Revises: 0052
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0053"
down_revision = "0052"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("intents", sa.Column("source", sa.String(1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("source")
