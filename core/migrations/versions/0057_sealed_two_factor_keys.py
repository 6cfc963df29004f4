"""users.totp_secret widened to 255 characters: two-factor keys are stored sealed (core.sealed), which
``helploop db upgrade`` does to the keys stored before, with the secret key of its settings

Revision ID: 0057
Revises: 0056
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0057"
down_revision = "0056"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column("totp_secret", existing_type=sa.String(64), type_=sa.String(255))


def downgrade() -> None:
    # A sealed key does not fit the old column, and the release before this one could not read it: those
    # accounts have two-factor sign-in turned off (key and recovery codes gone; they set it up again). A key
    # still in the clear stays.
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("totp_secret", sa.String))
    codes = sa.table("recovery_codes", sa.column("user_id", sa.Integer))
    sealed = sa.select(users.c.id).where(users.c.totp_secret.like("sealed:%"))
    op.execute(codes.delete().where(codes.c.user_id.in_(sealed)))
    op.execute(users.update().where(users.c.totp_secret.like("sealed:%")).values(totp_secret=None))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("totp_secret", existing_type=sa.String(255), type_=sa.String(64))
