"""Programmatic Alembic: ``helploop db upgrade`` and the tests call these, no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from core.redaction import redact

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords or query strings.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(
            alembic_config(engine.url.render_as_string(hide_password=False), connection), revision
        )


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(
            alembic_config(engine.url.render_as_string(hide_password=False), connection), revision
        )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    """Every schema revision this code has a migration for."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {script.revision for script in scripts.walk_revisions()}


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


REDACTED_TABLES = ("review_items", "verified_pairs")


def redact_stored_texts(connection: Connection, *, batch: int = 1000) -> int:
    """Redact the stored review texts again with the rules of this release: review items' texts (what
    reviewers see) and verified pairs' texts (what training reads) were redacted when stored, by the rules of
    their day. A redacted text redacted again changes only where the newer rules find more; placeholders stay,
    so a migration that calls this can run on any database and changes nothing twice. Returns the rows
    changed."""
    changed = 0
    for name in REDACTED_TABLES:
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("text", sa.Text))
        last = 0
        while True:
            rows = connection.execute(
                sa.select(table.c.id, table.c.text).where(table.c.id > last).order_by(table.c.id).limit(batch)
            ).all()
            if not rows:
                break
            for row_id, text in rows:
                redacted = redact(text or "")
                if redacted != (text or ""):
                    connection.execute(sa.update(table).where(table.c.id == row_id).values(text=redacted))
                    changed += 1
            last = rows[-1][0]
    return changed
