"""Backups of the embedded SQLite database (``helploop db backup`` / ``helploop db restore``).

A backup goes through SQLite's online backup API, so it is consistent while the web app and workers keep
writing; it is written beside its target and renamed into place only once it is complete and passes
``PRAGMA integrity_check``. A restore checks the file first (an SQLite database, intact, with a schema
revision this code knows), keeps a copy of the database it replaces, then swaps the file in. PostgreSQL has
its own tools (``pg_dump`` / ``pg_restore``); these functions refuse it with the command to use.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from core.db import DatabaseInUse, exclusive_use
from core.migrate import known_revisions

SQLITE_HEADER = b"SQLite format 3\x00"
Progress = Callable[[int, int], None]  # (pages done, pages in all)


class BackupError(ValueError):
    pass


@dataclass
class BackupInfo:
    path: Path
    bytes: int
    revision: str | None


@dataclass
class RestoreInfo:
    revision: str
    previous: Path | None  # the copy of the database that was replaced (None: there was none)


def sqlite_file(database_url: str) -> Path:
    """The file of an SQLite URL; refuses other databases with what to use instead."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        name = url.database or "DBNAME"
        raise BackupError(
            f"the database is {url.get_backend_name()}, not the embedded SQLite: use its own tools, e.g. "
            f"`pg_dump --format=custom --file helploop.dump {name}` and `pg_restore --clean --dbname {name} "
            "helploop.dump`"
        )
    if not url.database or url.database == ":memory:":
        raise BackupError("the database is in memory: there is no file to back up")
    return Path(url.database)


def _copy(source: sqlite3.Connection, target_path: Path, progress: Progress | None) -> None:
    """Copy ``source`` into a new file through the online backup API, checked before it is renamed."""
    partial = target_path.with_name(target_path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(partial)) as target:

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            source.backup(target, pages=256, progress=step)
            verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"the copy failed SQLite's integrity check: {verdict}")
        os.replace(partial, target_path)
    finally:
        partial.unlink(missing_ok=True)


def read_only(path: Path) -> sqlite3.Connection:
    """A backup file, opened so that a write-ahead log beside it counts (a file copied from a live database
    has one); nothing is written to it."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA query_only = ON")
    return connection


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row else None


def backup_sqlite(database_url: str, out: Path, *, progress: Progress | None = None) -> BackupInfo:
    source_path = sqlite_file(database_url)
    if not source_path.is_file():
        raise BackupError(f"there is no database at {source_path}")
    if out.exists():
        raise BackupError(f"{out} exists: choose another file (a backup never overwrites one)")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a folder")
    # A plain connection (the backup only reads): a read-only one cannot open a WAL database whose
    # shared-memory file is missing, and the newest commits may still be in the WAL.
    with closing(sqlite3.connect(source_path)) as source:
        revision = _revision(source)
        _copy(source, out, progress)
    return BackupInfo(out, out.stat().st_size, revision)


BACKUP_GLOB = "helploop-*.sqlite3"
# Scheduled backups run daily: the newest one older than this means the schedule missed a day.
BACKUP_STALE_AFTER = timedelta(days=2)
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def scheduled_backup(
    database_url: str,
    folder: Path,
    *,
    keep: int,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> tuple[BackupInfo, list[Path]]:
    """A backup named by its time (``helploop-20261202T030000Z.sqlite3``) in ``folder``; then the oldest
    beyond the newest ``keep`` are removed. Returns the backup and the files removed."""
    if keep < 1:
        raise BackupError(f"keep must be 1 or more, not {keep}")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime(STAMP_FORMAT)
    info = backup_sqlite(database_url, folder / f"helploop-{stamp}.sqlite3", progress=progress)
    backups = sorted(folder.glob(BACKUP_GLOB))  # the stamp sorts by time
    removed = backups[:-keep]
    for path in removed:
        path.unlink(missing_ok=True)
    return info, removed


@dataclass(frozen=True)
class StoredBackup:
    path: Path
    bytes: int
    taken_at: datetime  # from the file's name (UTC)


def stored_backups(folder: Path) -> list[StoredBackup]:
    """The scheduled backups in ``folder`` (files named as ``scheduled_backup`` names them), newest first;
    none when the folder does not exist yet."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(BACKUP_GLOB):
        stamp = path.name.removeprefix("helploop-").removesuffix(".sqlite3")
        try:
            taken_at = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
            size = path.stat().st_size
        except (ValueError, OSError):  # another file matching the pattern, or removed meanwhile
            continue
        found.append(StoredBackup(path, size, taken_at))
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def check_backup(path: Path) -> str:
    """The schema revision of a backup file, after checking that it is one this code can restore."""
    if not path.is_file():
        raise BackupError(f"{path}: file not found")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise BackupError(f"{path}: not an SQLite database")
    with closing(read_only(path)) as connection:
        try:
            verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path}: unreadable: {exc}") from None
        if verdict != "ok":
            raise BackupError(f"{path}: fails SQLite's integrity check: {verdict}")
        revision = _revision(connection)
    if revision is None:
        raise BackupError(f"{path}: not a HelpLoop database (no schema revision in it)")
    if revision not in known_revisions():
        raise BackupError(
            f"{path}: made by a newer HelpLoop (schema revision {revision}, unknown to this version): "
            "restore it with the version that wrote it"
        )
    return revision


def restore_sqlite(database_url: str, backup: Path, *, progress: Progress | None = None) -> RestoreInfo:
    """Make ``backup`` the database. Refused while the web app, a worker or a command has it open (each holds
    the in-use lock of ``core.db``): they would go on writing to the replaced file."""
    target = sqlite_file(database_url)
    revision = check_backup(backup)
    if backup.resolve() == target.resolve():
        raise BackupError(f"{backup} is the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = None
    try:
        with exclusive_use(target):
            if target.is_file():
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                previous = target.with_name(f"{target.name}.before-restore-{stamp}")
                with closing(sqlite3.connect(target)) as current:  # through SQLite: its journal included
                    _copy(current, previous, None)
            with closing(read_only(backup)) as source:
                _copy(source, target.with_name(target.name + ".restoring"), progress)
            for suffix in ("-wal", "-shm", "-journal"):  # the old file's journals must not replay onto it
                target.with_name(target.name + suffix).unlink(missing_ok=True)
            os.replace(target.with_name(target.name + ".restoring"), target)
    except DatabaseInUse:
        raise BackupError(
            f"{target} is open in another process (the web app, a worker or a command): stop them, then "
            "restore; nothing was changed"
        ) from None
    return RestoreInfo(revision, previous)
