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

import sqlalchemy as sa
from alembic import op

from core.redaction import redact

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

BATCH = 1000
TABLES = (
    sa.table("review_items", sa.column("id", sa.Integer), sa.column("text", sa.Text)),
    sa.table("verified_pairs", sa.column("id", sa.Integer), sa.column("text", sa.Text)),
)


def upgrade() -> None:
    connection = op.get_bind()
    for table in TABLES:
        last = 0
        while True:
            rows = connection.execute(
                sa.select(table.c.id, table.c.text).where(table.c.id > last).order_by(table.c.id).limit(BATCH)
            ).all()
            if not rows:
                break
            for row_id, text in rows:
                redacted = redact(text or "")
                if redacted != (text or ""):
                    connection.execute(sa.update(table).where(table.c.id == row_id).values(text=redacted))
            last = rows[-1][0]


def downgrade() -> None:
    """The originals are in the turn log (operators see them there); redacted text is not un-redacted."""
