"""ix_conversations_handoff_requested: conversations by the time a person was asked for, so the overview
reads a month's handoffs (how fast the team replied) without reading every conversation

Revision ID: 0048
Revises: 0047
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None


def upgrade() -> None:
    asked = sa.text("handoff_requested_at IS NOT NULL")  # the few conversations handed to a person
    op.create_index(
        "ix_conversations_handoff_requested",
        "conversations",
        ["handoff_requested_at"],
        sqlite_where=asked,
        postgresql_where=asked,
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_handoff_requested", table_name="conversations")
