"""SQLAlchemy engine and session factory. Nothing connects at import time."""

from __future__ import annotations

import os
import re
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.settings import Settings

try:
    import fcntl
except ImportError:  # not POSIX: no in-use lock (restore then relies on its --yes alone)
    fcntl = None  # type: ignore[assignment]

# Stable constraint names so Alembic migrations read the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    # WAL: readers never block the writer, and a commit costs no fsync of the main file (several web
    # threads and a job worker share the embedded database).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # What is deleted or overwritten (an erased conversation, a turn redacted after the retention period) is
    # zeroed in the file, not left readable in free space until SQLite reuses the page.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def checkpoint(engine: Engine) -> bool:
    """Move SQLite's write-ahead log into the database file and empty it (best effort: a long reader can hold
    it back; returns whether it completed). After an erasure, the log's older frames would otherwise keep
    the erased rows' pages until they are reused. PostgreSQL: nothing to do here (VACUUM's work)."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return not busy


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = sqlite_path(database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", configure_sqlite_connection)
        return engine
    if make_url(database_url).get_backend_name() == "postgresql":
        # Tagged, so that a restore can see HelpLoop's sessions in pg_stat_activity (core.backup).
        return create_engine(
            database_url,
            pool_pre_ping=True,
            connect_args={"application_name": application_name(database_url)},
        )
    return create_engine(database_url, pool_pre_ping=True)


def pinned_schema(database_url: str) -> str | None:
    """The schema a PostgreSQL URL pins with ``options=-csearch_path=NAME`` (a HelpLoop living in one schema
    of a shared database), else None."""
    options = str(make_url(database_url).query.get("options", ""))
    found = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", options)
    return found.group(1) if found else None


def application_name(database_url: str) -> str:
    """What HelpLoop's PostgreSQL sessions call themselves: ``helploop``, or ``helploop:SCHEMA``."""
    schema = pinned_schema(database_url)
    return f"helploop:{schema}" if schema else "helploop"


class DatabaseInUse(RuntimeError):
    pass


def sqlite_path(database_url: str) -> Path | None:
    """The file of an embedded SQLite database; None for an in-memory one or another database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def in_use_lock_path(database_file: Path) -> Path:
    return database_file.with_name(database_file.name + ".lock")


def _lock(database_file: Path, mode: int, *, wait: float) -> int | None:
    """``flock`` the database's lock file (created once, never deleted: deleting a lock file races), retrying
    for ``wait`` seconds; returns the descriptor that holds it. The lock goes with the process: one that dies
    holds nothing."""
    if fcntl is None:
        return None
    database_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(in_use_lock_path(database_file), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
            return descriptor
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(descriptor)
                raise DatabaseInUse(f"{database_file} is in use") from None
            time.sleep(0.1)


def _release(descriptor: int | None) -> None:
    if descriptor is not None:
        os.close(descriptor)  # closing the descriptor releases the lock


@contextmanager
def exclusive_use(database_file: Path) -> Iterator[None]:
    """Hold the embedded database alone, or raise ``DatabaseInUse`` at once: every process with a
    ``Database`` open on the file (the web app, each worker, a CLI command) holds a shared lock on
    ``<file>.lock``. A restore swaps the file inside this, so never under a running app."""
    descriptor = _lock(database_file, fcntl.LOCK_EX if fcntl else 0, wait=0.0)
    try:
        yield
    finally:
        _release(descriptor)


class Database:
    """One engine per process; hands out short-lived sessions (one per request or job). On the embedded
    SQLite it holds a shared lock on ``<file>.lock`` until ``dispose`` (see ``exclusive_use``)."""

    # A process that starts while a restore swaps the file waits this long for it before giving up.
    WAIT_FOR_RESTORE_SECONDS = 30.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        file = sqlite_path(settings.database_url)
        in_use = None
        if file is not None and fcntl is not None:
            in_use = _lock(file, fcntl.LOCK_SH, wait=self.WAIT_FOR_RESTORE_SECONDS)
        # Released by dispose, or when the Database is collected (a command that never disposes).
        self._release_lock = weakref.finalize(self, _release, in_use)
        self.engine = make_engine(settings.database_url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def checkpoint(self) -> bool:
        return checkpoint(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
        self._release_lock()  # once: later calls do nothing
