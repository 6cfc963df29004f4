"""turns (served_by, created_at) index: each arm's turns in a window (the canary on live traffic, before and
after a model change, the canary guard's once-a-minute look)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_turns_arm_created", "turns", ["served_by", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_turns_arm_created", table_name="turns")
