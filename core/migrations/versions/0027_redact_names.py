"""Stored review texts redacted again for the names customers give without "my name is": after a greeting's
"I am" or "this is" ("Hi, I'm Sarah"), "Dear", a title ("Mr Smith"), a relation ("my husband Tom"), "in the
name of", a name slot ("the name on my card is ..."), and in a closing sign-off ("Thanks, John"); for bank
details named as such (account numbers, sort codes, routing numbers) and secrets (a PIN, a card security code,
a one-time code, a password, a username); and for a second IBAN right after a first. As in 0026:
placeholders already there stay, and nothing changes twice.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from core.migrate import redact_stored_texts

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    redact_stored_texts(op.get_bind())


def downgrade() -> None:
    """The originals are in the turn log (operators see them there); redacted text is not un-redacted."""
