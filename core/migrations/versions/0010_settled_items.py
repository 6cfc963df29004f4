"""review_items.settled_by / settled_at: who decided an item by hand (an operator's settle, an adopted or
dismissed new-intent suggestion), so that bulk re-aggregation never overrides a person's decision

Items settled before this revision have no record of it (NULL): re-aggregation treats them as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("settled_by", sa.String(80), nullable=True))
        batch.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("settled_at")
        batch.drop_column("settled_by")
