"""ops_events: the outbox of operator notifications (deployment changes, finished jobs, suspended reviewers,
escalated items), delivered by the worker to the ops webhook and listed on the Activity page

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ops_events_kind", "ops_events", ["kind"])
    op.create_index("ix_ops_events_status_due", "ops_events", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_ops_events_status_due", table_name="ops_events")
    op.drop_index("ix_ops_events_kind", table_name="ops_events")
    op.drop_table("ops_events")
