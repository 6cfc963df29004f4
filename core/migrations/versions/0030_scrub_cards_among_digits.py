"""Stored texts scrubbed and redacted again for card numbers typed next to other digits ("order 12 4111 1111
1111 1111", "paid 25 00 …"), which older rules missed, and a phone number next to another finding. The turn
log, feedback and rating comments and live-chat messages keep no card number or secret (PCI DSS); review items
and verified pairs are redacted with this release's rules. Placeholders already there stay, and nothing
changes twice.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from core.migrate import redact_stored_texts, scrub_stored_secrets

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    scrub_stored_secrets(connection)
    redact_stored_texts(connection)


def downgrade() -> None:
    """A card number is not put back: the original is gone by design."""
