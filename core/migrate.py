"""Programmatic Alembic: ``helploop db upgrade`` and the tests call these, no alembic.ini needed."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql

from core.redaction import redact, scrub_secrets

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords or query strings.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


class MigrationError(RuntimeError):
    """A migration left the database inconsistent (rows that refer to rows that are not there)."""


def _dangling(connection: Connection) -> Counter[tuple[str, str]]:
    """SQLite's rows that refer to a missing row, counted per (table, the table it refers to)."""
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    return Counter((str(row[0]), str(row[2])) for row in rows)


@contextmanager
def _migrating(engine: Engine, *, pending: bool) -> Iterator[Connection]:
    """A connection to migrate on, in a transaction. On SQLite, with foreign keys not enforced while it runs
    (Alembic's advice for batch migrations): a batch migration copies a table and drops the old one, and with
    them enforced, that drop deletes every row that refers to the table (ON DELETE CASCADE): upgrading to
    0023 emptied review_item_turns that way. When migrations are ``pending``, the references are checked
    before and after: a run that leaves more rows pointing nowhere than there were is undone (schema changes
    included, see below). Enforced again after."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        driver: Any = connection.connection.dbapi_connection
        managed = getattr(driver, "isolation_level", None)
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: first
            connection.commit()
            # Python's sqlite3 opens a transaction before INSERT/UPDATE/DELETE only, so each CREATE, ALTER and
            # DROP was committed as it ran: a migration that failed half-way left half its schema behind.
            # Here the transaction is opened by hand and holds the DDL too: all of it commits, or none.
            driver.isolation_level = None
        check = sqlite and pending
        try:
            with connection.begin():
                if sqlite:
                    connection.exec_driver_sql("BEGIN")
                before = _dangling(connection) if check else Counter()
                yield connection
                if check:
                    grown = _dangling(connection) - before
                    if grown:
                        raise MigrationError(
                            f"the migration left {sum(grown.values())} rows referring to missing rows in "
                            f"{', '.join(sorted({table for table, _ in grown}))}"
                        )
        finally:
            if sqlite:
                driver.isolation_level = managed
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    target = head_revision() if revision == "head" else revision
    with _migrating(engine, pending=current_revision(engine) != target) as connection:
        command.upgrade(
            alembic_config(engine.url.render_as_string(hide_password=False), connection), revision
        )


def downgrade(engine: Engine, revision: str) -> None:
    with _migrating(engine, pending=True) as connection:
        command.downgrade(
            alembic_config(engine.url.render_as_string(hide_password=False), connection), revision
        )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@functools.cache  # the migration scripts are those this code shipped with: read them once a process
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
# Where the turn log and the live chat keep what customers typed, as it may be stored (scrub_secrets).
SCRUBBED_COLUMNS = (
    ("turns", "user_text"),
    ("turns", "feedback_comment"),
    ("conversations", "rating_comment"),
    ("conversation_messages", "text"),
    ("turns", "context_text"),  # migration 0039 on
    ("turns", "read_as"),  # migration 0041 on
)


def _rewrite_column(
    connection: Connection,
    table_name: str,
    column: str,
    kind: Any,
    rewrite: Callable[[Any], Any],
    *,
    batch: int,
) -> int:
    """Apply ``rewrite`` to one column's non-null values, a batch of rows at a time in key order; write the
    rows it changes. Returns how many it changed."""
    table = sa.table(table_name, sa.column("id"), sa.column(column, kind))
    changed = 0
    last = None
    while True:
        query = sa.select(table.c.id, table.c[column]).where(table.c[column].is_not(None))
        query = query.order_by(table.c.id).limit(batch)
        if last is not None:
            query = query.where(table.c.id > last)
        rows = connection.execute(query).all()
        if not rows:
            return changed
        for row_id, value in rows:
            if (new := rewrite(value)) != value:
                connection.execute(sa.update(table).where(table.c.id == row_id).values({column: new}))
                changed += 1
        last = rows[-1][0]


def _rewrite_texts(
    connection: Connection, table_name: str, column: str, rewrite: Callable[[str], str], *, batch: int
) -> int:
    """Apply ``rewrite`` to one text column (empty texts left alone)."""
    return _rewrite_column(
        connection, table_name, column, sa.Text, lambda text: rewrite(text) if text else text, batch=batch
    )


def redact_stored_texts(connection: Connection, *, batch: int = 1000) -> int:
    """Redact the stored review texts again with the rules of this release: review items' texts (what
    reviewers see) and verified pairs' texts (what training reads) were redacted when stored, by the rules of
    their day. A redacted text redacted again changes only where the newer rules find more; placeholders stay,
    so a migration that calls this can run on any database and changes nothing twice. Returns the rows
    changed."""
    changed = sum(_rewrite_texts(connection, name, "text", redact, batch=batch) for name in REDACTED_TABLES)
    columns = {c["name"] for c in sa.inspect(connection).get_columns("review_items")}
    # The turns before an item's question (0034 on): a migration of an older revision finds no such column.
    if "context" in columns:
        changed += _rewrite_contexts(connection, batch=batch)
    # The automatic redaction a hand redaction replaced (0038 on) is what the question's turn reads as under
    # the rules: it follows them, or that turn would no longer be known for the question.
    if "hand_redacted_from" in columns:
        changed += _rewrite_texts(connection, "review_items", "hand_redacted_from", redact, batch=batch)
    return changed


def _rewrite_contexts(connection: Connection, *, batch: int) -> int:
    """``redact`` over the texts of review_items.context (a list of turns, each with a "text")."""
    kind = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

    def rewrite(context: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**turn, "text": redact(turn.get("text") or "")} for turn in context]

    return _rewrite_column(connection, "review_items", "context", kind, rewrite, batch=batch)


def scrub_stored_secrets(connection: Connection, *, batch: int = 1000) -> int:
    """Scrub the turn log, feedback and rating comments and live-chat messages again with this release's
    rules for what is never stored (card numbers, secrets): text stored under older rules may hold what they
    missed. Like ``redact_stored_texts``: placeholders stay, nothing changes twice. Returns the rows
    changed."""
    inspector = sa.inspect(connection)
    present = {name: {c["name"] for c in inspector.get_columns(name)} for name, _ in SCRUBBED_COLUMNS}
    return sum(  # a migration of an older revision finds the newer columns missing
        _rewrite_texts(connection, name, column, scrub_secrets, batch=batch)
        for name, column in SCRUBBED_COLUMNS
        if column in present[name]
    )
