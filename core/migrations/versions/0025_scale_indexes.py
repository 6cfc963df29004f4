"""Indexes for long-lived installations: review_item_turns.turn_id (from a turn to its review items; without
it the overview's audited precision read every review item once per answered turn of the month),
conversations.last_activity_at (the Conversations pages list newest activity first) and the typed "that's
wrong" turns by time (a partial index: the overview's choices and corrections read only those)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_review_item_turns_turn_id", "review_item_turns", ["turn_id"])
    op.create_index("ix_conversations_last_activity", "conversations", ["last_activity_at"])
    complaints = sa.text("rated_turn_id IS NOT NULL")
    op.create_index(
        "ix_turns_complaints_created",
        "turns",
        ["created_at"],
        sqlite_where=complaints,
        postgresql_where=complaints,
    )


def downgrade() -> None:
    op.drop_index("ix_turns_complaints_created", table_name="turns")
    op.drop_index("ix_conversations_last_activity", table_name="conversations")
    op.drop_index("ix_review_item_turns_turn_id", table_name="review_item_turns")
