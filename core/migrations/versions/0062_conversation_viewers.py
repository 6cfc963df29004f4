"""conversation_viewers: who from the team has a conversation's page open, and who is typing a reply in it
(core.presence), so two people answering one customer see each other before they both write

Revision ID: 0062
Revises: 0061
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0062"
down_revision = "0061"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_viewers",
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("typing_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_conversation_viewers_seen_at", "conversation_viewers", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_conversation_viewers_seen_at", table_name="conversation_viewers")
    op.drop_table("conversation_viewers")
