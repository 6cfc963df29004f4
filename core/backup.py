"""Backups of the embedded SQLite database (``helploop db backup`` / ``helploop db restore``).

A backup goes through SQLite's online backup API, so it is consistent while the web app and workers keep
writing; it is written beside its target and renamed into place only once it is complete and passes
``PRAGMA integrity_check``. A restore checks the file first (an SQLite database, intact, with a schema
revision this code knows), keeps a copy of the database it replaces, then swaps the file in.

PostgreSQL is backed up with its own tools: ``pg_dump --format=custom`` (checked with ``pg_restore --list``
before it is renamed into place) and restored with ``pg_restore --clean --single-transaction``, after a dump
of the database it replaces. The ``backup_database`` / ``restore_database`` / ``check_backup`` functions
pick the way by the database URL and the file.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.db import DatabaseInUse, application_name, exclusive_use, pinned_schema, sqlite_path
from core.migrate import current_revision, known_revisions

SQLITE_HEADER = b"SQLite format 3\x00"
DUMP_HEADER = b"PGDMP"  # pg_dump's custom format
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
    path = sqlite_path(database_url)
    if path is None:
        raise BackupError("the database is in memory: there is no file to back up")
    return path


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
        try:
            _copy(source, out, progress)
        except (OSError, sqlite3.OperationalError) as exc:  # a folder it may not write to, a full disk
            raise BackupError(f"{out}: cannot write the backup there ({exc})") from None
    return BackupInfo(out, out.stat().st_size, revision)


SQLITE_SUFFIX, DUMP_SUFFIX = ".sqlite3", ".dump"  # scheduled backups of SQLite and of PostgreSQL
SIDECAR_SUFFIX = ".models.json"  # beside a backup: the model versions it serves (training.model_backup)
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
    if make_url(database_url).get_backend_name() == "sqlite":
        info = backup_sqlite(database_url, folder / f"helploop-{stamp}{SQLITE_SUFFIX}", progress=progress)
    else:
        info = backup_postgres(database_url, folder / f"helploop-{stamp}{DUMP_SUFFIX}")
    removed = [b.path for b in stored_backups(folder)[keep:]]  # newest first
    for path in removed:
        path.unlink(missing_ok=True)
        path.with_name(path.name + SIDECAR_SUFFIX).unlink(missing_ok=True)
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
    for path in folder.glob("helploop-*"):
        if path.suffix not in (SQLITE_SUFFIX, DUMP_SUFFIX):
            continue
        stamp = path.name.removeprefix("helploop-").removesuffix(path.suffix)
        try:
            taken_at = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
            size = path.stat().st_size
        except (ValueError, OSError):  # another file matching the pattern, or removed meanwhile
            continue
        found.append(StoredBackup(path, size, taken_at))
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def is_sqlite_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _known(path: Path, revision: str | None) -> str:
    if revision is None:
        raise BackupError(f"{path}: not a HelpLoop database (no schema revision in it)")
    if revision not in known_revisions():
        raise BackupError(
            f"{path}: made by a newer HelpLoop (schema revision {revision}, unknown to this version): "
            "restore it with the version that wrote it"
        )
    return revision


def check_backup(path: Path) -> str:
    """The schema revision of a backup file (an SQLite copy or a pg_dump archive), after checking that it is
    one this code can restore."""
    if not path.is_file():
        raise BackupError(f"{path}: file not found")
    if not is_sqlite_file(path):
        with path.open("rb") as handle:
            if handle.read(len(DUMP_HEADER)) != DUMP_HEADER:
                raise BackupError(f"{path}: neither an SQLite database nor a pg_dump archive")
        return check_dump(path)
    with closing(read_only(path)) as connection:
        try:
            verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path}: unreadable: {exc}") from None
        if verdict != "ok":
            raise BackupError(f"{path}: fails SQLite's integrity check: {verdict}")
        revision = _revision(connection)
    return _known(path, revision)


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


# ------------------------------------------------------------------------------------------- PostgreSQL


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed: install PostgreSQL's client tools, the same major version as the "
            "server or newer (Debian: `apt-get install postgresql-client`)"
        )
    return found


def _postgres(database_url: str) -> tuple[str, dict[str, str], list[str]]:
    """libpq's view of a SQLAlchemy URL: a URI without the password (it goes in PGPASSWORD, never on a
    command line), the environment, and ``--schema`` when the URL pins a search_path (a HelpLoop that
    lives in one schema of a shared database is dumped and restored alone)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise BackupError(f"the database is {url.get_backend_name()}, not PostgreSQL")
    environment = dict(os.environ)
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    schema = pinned_schema(database_url)
    query = {k: v for k, v in url.query.items() if k != "options"}
    uri = url.set(drivername="postgresql", password=None, query=query).render_as_string(hide_password=False)
    return uri, environment, ["--schema", schema] if schema else []


def _run(command: list[str], environment: dict[str, str], what: str) -> str:
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise BackupError(f"{what} failed: {last}")
    return done.stdout


def helploop_sessions(database_url: str) -> int:
    """How many sessions of this HelpLoop (tagged by ``core.db.make_engine``) are connected to the database:
    the web app's, the workers', a command's. This connection is untagged and does not count itself."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "select count(*) from pg_stat_activity "
                        "where datname = current_database() and application_name = :name"
                    ),
                    {"name": application_name(database_url)},
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


def pg_tools_problem(database_url: str) -> str | None:
    """Why ``pg_dump`` could not back this PostgreSQL database up (None: it can): a tool missing, or a
    client older than the server (pg_dump refuses a newer server). A database it cannot reach is left to
    the caller's own check."""
    try:
        pg_dump = _tool("pg_dump")
        _tool("pg_restore")
    except BackupError as exc:
        return str(exc)
    version = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, check=False).stdout
    client = re.search(r"(\d+)(?:\.\d+)?", version)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            server = int(connection.execute(text("show server_version_num")).scalar() or 0) // 10000
    except Exception:  # noqa: BLE001 - unreachable: said by the database check
        return None
    finally:
        engine.dispose()
    if client is None or int(client.group(1)) < server:
        have = client.group(1) if client else "unknown"
        return (
            f"pg_dump is version {have} and the server {server}: a client must be as new as its server "
            f"(install postgresql-client-{server})"
        )
    return None


def backup_postgres(database_url: str, out: Path) -> BackupInfo:
    """``pg_dump --format=custom`` into ``out``: written beside it, listed by ``pg_restore`` to check it,
    then renamed into place; never overwrites a file."""
    uri, environment, schema = _postgres(database_url)
    pg_dump, pg_restore = _tool("pg_dump"), _tool("pg_restore")
    if out.exists():
        raise BackupError(f"{out} exists: choose another file (a backup never overwrites one)")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a folder")
    partial = out.with_name(out.name + ".partial")
    try:
        _run(
            [pg_dump, "--format=custom", "--file", str(partial), *schema, "--dbname", uri],
            environment,
            "pg_dump",
        )
        _run([pg_restore, "--list", str(partial)], environment, "checking the dump")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    engine = create_engine(database_url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    return BackupInfo(out, out.stat().st_size, revision)


def check_dump(path: Path) -> str:
    """The schema revision inside a pg_dump archive (its alembic_version row), after ``pg_restore`` has read
    the archive's table of contents."""
    pg_restore = _tool("pg_restore")
    environment = dict(os.environ)
    try:
        _run([pg_restore, "--list", str(path)], environment, "reading the archive")
    except BackupError:
        raise BackupError(f"{path}: neither an SQLite database nor a pg_dump archive") from None
    data = _run(
        [pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(path)],
        environment,
        "reading the schema revision",
    )
    rows, copying = [], False
    for line in data.splitlines():
        if line.startswith("COPY ") and "alembic_version" in line:
            copying = True
        elif copying and line == "\\.":
            break
        elif copying and line.strip():
            rows.append(line.strip())
    return _known(path, rows[0] if rows else None)


def restore_postgres(database_url: str, backup: Path) -> RestoreInfo:
    """Restore a pg_dump archive in one transaction (all of it or nothing), after dumping the database it
    replaces beside the archive (``<archive>.before-restore-TIMESTAMP``). Refused while HelpLoop sessions
    are connected (``helploop_sessions``): the web app and workers must be stopped."""
    revision = check_dump(backup)
    uri, environment, schema = _postgres(database_url)
    deadline = (
        time.monotonic() + 3.0
    )  # a session that just disconnected leaves pg_stat_activity shortly after
    while (connected := helploop_sessions(database_url)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if connected:
        raise BackupError(
            f"{connected} HelpLoop session(s) are connected to the database (the web app, a worker or a "
            "command): stop them, then restore; nothing was changed"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    # Named so that no glob for backups takes it for one (it is the state before, not a scheduled backup).
    previous = backup_postgres(database_url, backup.with_name(f"{backup.name}.before-restore-{stamp}")).path
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            *schema,
            "--dbname",
            uri,
            str(backup),
        ],
        environment,
        "pg_restore",
    )
    return RestoreInfo(revision, previous)


def backup_database(database_url: str, out: Path, *, progress: Progress | None = None) -> BackupInfo:
    """The backup of whichever database the URL names: an SQLite copy, or a pg_dump archive."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return backup_sqlite(database_url, out, progress=progress)
    return backup_postgres(database_url, out)


def restore_database(database_url: str, backup: Path, *, progress: Progress | None = None) -> RestoreInfo:
    """Restore a backup of the same kind as the database: an SQLite copy into SQLite, a pg_dump archive into
    PostgreSQL (moving between them is an export and an import, not a restore)."""
    if not backup.is_file():
        raise BackupError(f"{backup}: file not found")
    sqlite = make_url(database_url).get_backend_name() == "sqlite"
    if sqlite != is_sqlite_file(backup):
        have, need = ("an SQLite copy", "a pg_dump archive") if not sqlite else ("not an SQLite copy", "one")
        raise BackupError(f"{backup} is {have}, and this database needs {need}")
    if sqlite:
        return restore_sqlite(database_url, backup, progress=progress)
    return restore_postgres(database_url, backup)
