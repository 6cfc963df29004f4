"""Single sign-on: users.sso_issuer and users.sso_subject (the identity provider and its id of the person),
unique together

Revision ID: 0051
Revises: 0050
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0051"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("sso_issuer", sa.String(255), nullable=True))
    op.add_column("users", sa.Column("sso_subject", sa.String(255), nullable=True))
    op.create_index("uq_users_sso", "users", ["sso_issuer", "sso_subject"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_sso", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sso_subject")
        batch.drop_column("sso_issuer")
