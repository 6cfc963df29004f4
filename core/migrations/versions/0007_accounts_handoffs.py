"""account_events (audit trail of accounts); conversations: who closed a handoff, when, with what note

Operators now manage accounts (create, reset a password, deactivate, reactivate, reinstate a reviewer the gold
check suspended); each change, and each automatic suspension, is a row: who, when, why. Conversations handed
to a person wait in the operators' inbox until one of them marks the handoff handled.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_account_events_user_id", "account_events", ["user_id"])
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("handoff_closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("handoff_closed_by", sa.String(100), nullable=True))
        batch.add_column(sa.Column("handoff_note", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("handoff_note")
        batch.drop_column("handoff_closed_by")
        batch.drop_column("handoff_closed_at")
    op.drop_index("ix_account_events_user_id", table_name="account_events")
    op.drop_table("account_events")
