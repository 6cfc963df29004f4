"""Stored review texts redacted again with the newer rules (names a customer gives, dates of birth, ID
numbers named as one, IP addresses, UK National Insurance numbers, postcodes, street addresses). Review items'
texts (what reviewers see) and verified pairs' texts (what training reads) were redacted when they were
stored, by the rules of the day. Redacting a redacted text again only replaces what the newer rules find;
placeholders stay as they are, so this can run on any database and changes nothing twice.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from core.migrate import redact_stored_texts

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    redact_stored_texts(op.get_bind())


def downgrade() -> None:
    """The originals are in the turn log (operators see them there); redacted text is not un-redacted."""
