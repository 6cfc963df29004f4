"""review_items.embedding: "no vector" is SQL NULL, not the JSON value null

Items routed without a vector stored JSON null (SQLAlchemy's JSON default for None). The column now maps None
to SQL NULL, so the router's "which pending items have no vector" query is a plain IS NULL, with no JSON
serialised per row; this turns the older rows' JSON nulls into SQL NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE review_items SET embedding = NULL WHERE CAST(embedding AS TEXT) = 'null'")


def downgrade() -> None:
    pass  # SQL NULL reads back as None under the old mapping too
