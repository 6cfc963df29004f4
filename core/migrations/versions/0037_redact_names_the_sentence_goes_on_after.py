"""Stored review texts redacted again for a name after "I am" where the sentence goes on ("I am John and my
card is lost", "I'm Ahmed Khan and ..."): older rules took such a name only where it ended the message or a
clause. A listed first name, or a first name and a surname, now counts wherever the sentence goes. The turns
kept before review questions (review_items.context) with them. As in 0026: placeholders already there stay,
and nothing changes twice.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from core.migrate import redact_stored_texts

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    redact_stored_texts(op.get_bind())


def downgrade() -> None:
    """The originals are in the turn log (operators see them there); redacted text is not un-redacted."""
