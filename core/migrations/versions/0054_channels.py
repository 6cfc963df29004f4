"""channels: chats on messaging apps (Telegram, WhatsApp), their delivered updates, and the outbox of replies

Revision ID: 0054
Revises: 0053
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0054"
down_revision = "0053"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_chats",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("chat_key", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_channel_chats_chat", "channel_chats", ["channel", "chat_key"])
    op.create_table(
        "channel_events",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_channel_events_received_at", "channel_events", ["received_at"])
    op.create_table(
        "channel_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("chat_key", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_channel_messages_conversation_id", "channel_messages", ["conversation_id"])
    op.create_index("ix_channel_messages_status_due", "channel_messages", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_channel_messages_status_due", table_name="channel_messages")
    op.drop_index("ix_channel_messages_conversation_id", table_name="channel_messages")
    op.drop_table("channel_messages")
    op.drop_index("ix_channel_events_received_at", table_name="channel_events")
    op.drop_table("channel_events")
    op.drop_index("ix_channel_chats_chat", table_name="channel_chats")
    op.drop_table("channel_chats")
