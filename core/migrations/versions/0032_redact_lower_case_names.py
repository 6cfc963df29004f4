"""Stored review texts redacted again for first names given in lower case ("hi im sarah", "thanks tom", "my
husband tom"), which older rules kept. As in 0026: placeholders already there stay, and nothing changes twice.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from core.migrate import redact_stored_texts

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    redact_stored_texts(op.get_bind())


def downgrade() -> None:
    """The originals are in the turn log (operators see them there); redacted text is not un-redacted."""
