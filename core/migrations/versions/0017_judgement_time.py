"""claims.claimed_at, judgements.seconds: how long a reviewer held an item before answering it (review effort,
per-reviewer pace)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("claims") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("judgements") as batch:
        batch.add_column(sa.Column("seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgements") as batch:
        batch.drop_column("seconds")
    with op.batch_alter_table("claims") as batch:
        batch.drop_column("claimed_at")
