"""Stored review texts redacted again for names given after a clause ("my card has not come, I am Sarah
Jones"), which older rules kept (they took "I am"/"this is" only at the start of a message or after a
greeting); the turns kept before review questions (review_items.context) with them. As in 0026: placeholders
already there stay, and nothing changes twice.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from core.migrate import redact_stored_texts

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    redact_stored_texts(op.get_bind())


def downgrade() -> None:
    """The originals are in the turn log (operators see them there); redacted text is not un-redacted."""
