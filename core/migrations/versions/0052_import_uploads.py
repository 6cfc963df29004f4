"""import_uploads: files uploaded on the Knowledge page (Word documents, PDFs) waiting for their import job

Revision ID: 0052
Revises: 0051
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_uploads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_import_uploads_job_id", "import_uploads", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_import_uploads_job_id", table_name="import_uploads")
    op.drop_table("import_uploads")
