"""channel_chats.customer_at: the customer's last message in the chat, from which Meta's apps count the
24 hours in which they take the team's replies

Revision ID: 0056
Revises: 0055
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0056"
down_revision = "0055"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("channel_chats", sa.Column("customer_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_chats") as batch:
        batch.drop_column("customer_at")
