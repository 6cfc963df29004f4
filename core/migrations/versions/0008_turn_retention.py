"""turns.redacted_at: when the retention job replaced the original message by its redacted form

With `turn_retention_days` set, a daily job redacts the originals of older turns in place (the turn stays,
with its scores, for the metrics); this column marks the turns already done so the job never re-reads them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("redacted_at")
