"""An index for the operators' conversation search over what customers typed: SQLite's FTS5 trigram table
``turns_text`` (kept in step by triggers, filled from the turns already logged), PostgreSQL's trigram GIN
index on ``lower(user_text)`` where ``pg_trgm`` may be created. Without it (an old SQLite, no privilege) the
search reads the table as before.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from core.turn_search import create_index, drop_index

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index(op.get_bind())


def downgrade() -> None:
    drop_index(op.get_bind())
