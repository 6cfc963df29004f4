"""conversations.site and conversations.page_url: the web page a widget chat was last on (core.pages), shown
to the team in the live chat and, by site, on the widget's install page

Revision ID: 0058
Revises: 0057
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0058"
down_revision = "0057"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("site", sa.String(200), nullable=True))
    op.add_column("conversations", sa.Column("page_url", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("page_url")
        batch.drop_column("site")
