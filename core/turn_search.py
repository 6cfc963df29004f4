"""An index of what customers typed, for the operators' conversation search ("card", "refund", an order
number). Without it a search reads every turn's text: fine for a demo, seconds for a log of millions.

- SQLite (the embedded default): an FTS5 table with the trigram tokenizer over ``turns.user_text`` (external
  content: the text is not stored twice), kept in step by triggers. Trigrams find any substring of three
  characters or more, case-insensitively (Unicode too, where ``lower()`` folds ASCII only).
- PostgreSQL: a trigram GIN index (``pg_trgm``) on ``lower(user_text)``, which the planner uses for the same
  ``LIKE '%…%'`` the search has always run. Where the extension may not be created (no privilege), there is no
  index and the search reads the table, as before.

A needle shorter than three characters, or a database without the index, falls back to the plain scan, so
the results never depend on the index: only the time does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Integer, column, func, text
from sqlalchemy.orm import Session

from core.models import Turn

FTS_TABLE = "turns_text"
TRIGGERS = ("turns_text_insert", "turns_text_delete", "turns_text_update")
PG_INDEX = "ix_turns_user_text_trigram"
MIN_NEEDLE = 3  # a trigram index answers needles of three characters or more

_SQLITE_CREATE = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(user_text, content='turns', content_rowid='id', "
    "tokenize='trigram')",
    f"CREATE TRIGGER turns_text_insert AFTER INSERT ON turns BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, user_text) VALUES (new.id, new.user_text); END",
    f"CREATE TRIGGER turns_text_delete AFTER DELETE ON turns BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, user_text) VALUES ('delete', old.id, old.user_text); END",
    f"CREATE TRIGGER turns_text_update AFTER UPDATE OF user_text ON turns BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, user_text) VALUES ('delete', old.id, old.user_text); "
    f"INSERT INTO {FTS_TABLE}(rowid, user_text) VALUES (new.id, new.user_text); END",
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",  # the turns logged before
)


def create_index(connection: Connection) -> bool:
    """Create the index (and fill it from the turns already logged). Returns whether there is one: False where
    this SQLite lacks FTS5's trigram tokenizer (before 3.34) or PostgreSQL may not create ``pg_trgm``."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        options = {row[0] for row in connection.execute(text("PRAGMA compile_options"))}
        release = connection.execute(text("SELECT sqlite_version()")).scalar_one()
        version = tuple(int(part) for part in release.split("."))
        if "ENABLE_FTS5" not in options or version < (3, 34):
            return False
        for statement in _SQLITE_CREATE:
            connection.execute(text(statement))
        return True
    if dialect == "postgresql":
        try:
            with connection.begin_nested():  # a refused CREATE EXTENSION must not abort the migration
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except Exception:  # noqa: BLE001 - no privilege: the search scans, as before
            return False
        connection.execute(
            text(f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON turns USING {_pg_index_method(connection)}")
        )
        return True
    return False


def _pg_index_method(connection: Connection) -> str:
    # The operator class lives in the extension's schema, which need not be on this search_path.
    schema = connection.execute(
        text("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'")
    ).scalar_one()
    return f"gin (lower(user_text) {schema}.gin_trgm_ops)"


def rebuild_index_online(engine: Engine) -> bool:
    """``rebuild_index`` for a live PostgreSQL database (``helploop db search-index``): the new index is built
    ``CONCURRENTLY`` beside the old one, which then makes way for it, so chat turns keep being logged and
    searches keep their index while it builds. A plain build holds every insert into ``turns`` back for the
    whole build (measured here: 11.6 s for 500,000 turns; 18.9 s concurrently, with nothing held back). Each
    statement runs on its own (outside a transaction, as ``CONCURRENTLY`` must); a build that failed half way
    leaves an invalid index under the new name, which the next run drops first. On SQLite: the plain rebuild,
    in one transaction."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            return rebuild_index(connection)
    building = f"{PG_INDEX}_new"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        try:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except Exception:  # noqa: BLE001 - no privilege: the search scans, as before
            return False
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {building}"))
        method = _pg_index_method(connection)
        connection.execute(text(f"CREATE INDEX CONCURRENTLY {building} ON turns USING {method}"))
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {PG_INDEX}"))
        connection.execute(text(f"ALTER INDEX {building} RENAME TO {PG_INDEX}"))
    return True


def drop_index(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        for trigger in TRIGGERS:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
        connection.execute(text(f"DROP TABLE IF EXISTS {FTS_TABLE}"))
    elif connection.dialect.name == "postgresql":
        connection.execute(text(f"DROP INDEX IF EXISTS {PG_INDEX}"))


@contextmanager
def kept_across_table_copy(connection: Connection) -> Iterator[None]:
    """Around a migration step that may copy SQLite's ``turns`` table (a batch operation dropping a column):
    the copy takes the index's triggers with it, so where there was an index it is built again after."""
    had = connection.dialect.name == "sqlite" and index_state(connection) != "missing"
    yield
    if had and index_state(connection) != "ok":
        rebuild_index(connection)


def rebuild_index(connection: Connection) -> bool:
    """Drop and create the index again (``helploop db search-index``): for a stale one, or after moving
    the database to a SQLite or a PostgreSQL role that can build one."""
    drop_index(connection)
    return create_index(connection)


MERGE_STEP_PAGES = 200  # pages a merge step writes: 0.03 s (at most 0.04) under the write lock, 2 busy cores


def compact_index(session: Session, *, progress: Callable[[float], None] | None = None) -> int:
    """Merge SQLite's index into one segment, which drops what edits and deletions left behind: FTS5 marks an
    old text's entries deleted and keeps them until a merge. The retention job calls this after redacting old
    turns in place, so the originals' trigrams leave the index too, and erasure after deleting a conversation.
    (On PostgreSQL, VACUUM does the same for the GIN index and the table alike.)

    FTS5's ``optimize`` would rewrite the whole index in one transaction, holding the write lock (and every
    chat turn waiting to be logged) for about a second per 300,000 turns. This merges incrementally instead
    (``merge`` with a negative page count, which takes segments of any level): ``MERGE_STEP_PAGES`` pages a
    step, each step its own transaction, until one segment is left; the end state is the same. Commits the
    session's pending work with the first step. Returns the number of steps; ``progress`` gets the share of
    the index's pages merged so far after each."""
    if not compacts(session.connection()):
        return 0
    total = max(1, int(session.execute(text(f"SELECT count(*) FROM {FTS_TABLE}_data")).scalar_one()))
    steps = 0
    while _segments(session) > 1:
        raw: Any = session.connection().connection.driver_connection  # sqlite3's, for total_changes
        before = raw.total_changes
        session.execute(
            text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('merge', :pages)"),
            {"pages": -MERGE_STEP_PAGES},
        )
        worked = raw.total_changes - before >= 2  # FTS5's own test of whether a merge did anything
        session.commit()
        steps += 1
        if progress is not None:
            progress(min(1.0, steps * MERGE_STEP_PAGES / total))
        if not worked:
            break
    return steps


def _segments(session: Session) -> int:
    return int(session.execute(text(f"SELECT count(DISTINCT segid) FROM {FTS_TABLE}_idx")).scalar_one())


def compacts(connection: Connection) -> bool:
    """Whether ``compact_index`` has work here: SQLite with the index (PostgreSQL's VACUUM does it there)."""
    return connection.dialect.name == "sqlite" and index_state(connection) != "missing"


def index_state(connection: Connection) -> str:
    """The index's state: "ok"; "missing" (no index: searches scan); or "stale" (SQLite's table without all
    its triggers: a migration that rebuilt the turns table dropped them, and new turns would not be found;
    PostgreSQL's index left invalid by a build that failed)."""
    if connection.dialect.name == "sqlite":
        names = set(
            connection.execute(
                text("SELECT name FROM sqlite_master WHERE name = :table OR type = 'trigger'"),
                {"table": FTS_TABLE},
            ).scalars()
        )
        if FTS_TABLE not in names:
            return "missing"
        return "ok" if set(TRIGGERS) <= names else "stale"
    if connection.dialect.name == "postgresql":  # "stale": a build that failed left it invalid (unused)
        valid = connection.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": PG_INDEX}
        ).scalar()
        return "missing" if valid is None else "ok" if valid else "stale"
    return "missing"


def user_text_matches(session: Session, needle: str) -> Any:
    """A condition on ``Turn``: its text holds ``needle`` (case-insensitive substring). Through the SQLite
    index where there is one and the needle is long enough; otherwise the ``LIKE`` the planner may answer from
    PostgreSQL's trigram index, or by reading the table."""
    needle = needle.strip()
    if session.get_bind().dialect.name == "sqlite" and len(needle) >= MIN_NEEDLE:
        if index_state(session.connection()) == "ok":
            phrase = '"' + needle.replace('"', '""') + '"'  # one phrase: quotes and operators taken literally
            rows = text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :phrase")
            return Turn.id.in_(rows.bindparams(phrase=phrase).columns(column("rowid", Integer)))
    return func.lower(Turn.user_text).contains(needle.lower(), autoescape=True)


def not_search_index(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's ``include_name``: the search index is built by its migration, not from ``core.models``
    (FTS5's virtual table and its shadow tables, PostgreSQL's expression index), so autogenerate leaves it
    alone."""
    return not (name or "").startswith((FTS_TABLE, PG_INDEX))
