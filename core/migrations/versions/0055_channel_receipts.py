"""channel_messages: the app's id of each message sent, and when the customer's phone got it and when they
read it (WhatsApp's statuses, Messenger's delivery and read receipts)

Revision ID: 0055
Revises: 0054
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0055"
down_revision = "0054"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("channel_messages", sa.Column("app_message_id", sa.String(200), nullable=True))
    op.add_column("channel_messages", sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("channel_messages", sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_channel_messages_app_id", "channel_messages", ["channel", "app_message_id"])


def downgrade() -> None:
    op.drop_index("ix_channel_messages_app_id", table_name="channel_messages")
    with op.batch_alter_table("channel_messages") as batch:
        batch.drop_column("read_at")
        batch.drop_column("delivered_at")
        batch.drop_column("app_message_id")
