"""Live chat after a handoff: conversation_messages (operator replies and the customer's messages to them) and
conversations.agent (who is chatting now; the bot stays quiet while it is set)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("agent", sa.String(100), nullable=True))
    op.create_table(
        "conversation_messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("agent", sa.String(100), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_conversation_messages_conversation_id", "conversation_messages", ["conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_conversation_messages_conversation_id", table_name="conversation_messages")
    op.drop_table("conversation_messages")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("agent")
