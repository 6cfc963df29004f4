"""review_items.privacy_reported_at / privacy_reported_by: a reviewer found personal data that redaction
missed in what the item shows (its question or the turns before it); the item leaves the queue until an
operator redacts it by hand; review_items.hand_redacted_from: the automatically redacted question an
operator's hand redaction replaced (its member turn reads so, and is shown and trained on as the hand-redacted
text)

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("privacy_reported_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("privacy_reported_by", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("hand_redacted_from", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("hand_redacted_from")
        batch.drop_column("privacy_reported_by")
        batch.drop_column("privacy_reported_at")
