"""synonym_groups: the knowledge base's synonyms (groups of phrases that mean the same here, as Azure question
answering's word alterations: "cashpoint", "ATM"), read by the served models without retraining

Revision ID: 0047
Revises: 0046
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "synonym_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("phrases", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("synonym_groups")
