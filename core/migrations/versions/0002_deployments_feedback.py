"""deployments, turn feedback and serving arm

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("production_version", sa.String(length=80), nullable=False),
        sa.Column("canary_version", sa.String(length=80), nullable=True),
        sa.Column("canary_share", sa.Float(), nullable=False),
        sa.Column("shadow_version", sa.String(length=80), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handoff_requested_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("served_by", sa.String(length=20), nullable=False, server_default="production")
        )
        batch_op.add_column(
            sa.Column(
                "shadow_prediction", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("helpful", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("feedback_comment", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("feedback_at")
        batch_op.drop_column("feedback_comment")
        batch_op.drop_column("helpful")
        batch_op.drop_column("shadow_prediction")
        batch_op.drop_column("served_by")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("handoff_requested_at")

    op.drop_table("deployments")
