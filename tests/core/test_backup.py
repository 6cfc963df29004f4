"""Backups of the embedded SQLite database: consistent while it is written, checked, and restorable."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core import migrate
from core.backup import BackupError, backup_sqlite, check_backup, restore_sqlite, sqlite_file
from core.db import Database, DatabaseInUse, exclusive_use
from core.models import Intent
from core.settings import load_settings

INSERT = (
    "INSERT INTO intents (name, title, answer, follow_ups, reviewer_note, created_at, updated_at) "
    "VALUES ('{name}', 't', 'a', '[]', '', '2026-12-02 00:00:00', '2026-12-02 00:00:00')"
)


def _database(tmp_path: Path, name: str = "helploop.sqlite3", revision: str = "head") -> Database:
    settings = load_settings(
        {
            "environment": "testing",
            "instance_path": str(tmp_path),
            "database_url": f"sqlite:///{tmp_path / name}",
        },
        environ={},
    )
    database = Database(settings)
    migrate.upgrade(database.engine, revision)
    return database


def _add_intents(database: Database, *names: str) -> None:
    # Plain SQL, not the ORM: a database at an older revision lacks the newer columns the model writes.
    with database.engine.begin() as connection:
        for name in names:
            connection.exec_driver_sql(INSERT.format(name=name))


def _intents(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM intents ORDER BY name")]


def test_a_backup_holds_every_commit_even_those_still_in_the_wal(tmp_path: Path) -> None:
    database = _database(tmp_path)
    _add_intents(database, "card_arrival", "change_pin")
    writer = database.engine.connect()  # a commit that stays in the WAL: no checkpoint, connection open
    writer.exec_driver_sql(INSERT.format(name="in_wal"))
    writer.commit()
    pending = database.engine.connect()  # and a write still open: not in the backup
    pending.exec_driver_sql(INSERT.format(name="uncommitted"))
    assert (tmp_path / "helploop.sqlite3-wal").stat().st_size > 0
    seen: list[tuple[int, int]] = []
    info = backup_sqlite(
        database.settings.database_url, tmp_path / "copy.sqlite3", progress=lambda d, t: seen.append((d, t))
    )
    pending.rollback()
    pending.close()
    writer.close()
    assert (
        info.revision == migrate.head_revision() and info.bytes == (tmp_path / "copy.sqlite3").stat().st_size
    )
    assert seen and seen[-1][0] == seen[-1][1] > 0  # progress reached the last page
    assert _intents(tmp_path / "copy.sqlite3") == ["card_arrival", "change_pin", "in_wal"]
    assert check_backup(tmp_path / "copy.sqlite3") == migrate.head_revision()
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(BackupError, match="copy.sqlite3 exists: choose another file"):
        backup_sqlite(database.settings.database_url, tmp_path / "copy.sqlite3")
    database.dispose()


def test_backup_refuses_what_it_cannot_copy(tmp_path: Path) -> None:
    with pytest.raises(
        BackupError, match="postgresql, not the embedded SQLite: use its own tools, e.g. `pg_dump"
    ):
        sqlite_file("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with pytest.raises(BackupError, match="in memory"):
        sqlite_file("sqlite://")
    with pytest.raises(BackupError, match="there is no database at"):
        backup_sqlite(f"sqlite:///{tmp_path / 'none.sqlite3'}", tmp_path / "out.sqlite3")
    database = _database(tmp_path)
    with pytest.raises(BackupError, match="is not a folder"):
        backup_sqlite(database.settings.database_url, tmp_path / "no" / "such" / "out.sqlite3")
    # A folder nothing can be written to (as root too): an error naming the file, not a traceback.
    unwritable = Path("/proc/helploop-backup.sqlite3")
    if Path("/proc/self").is_dir():
        with pytest.raises(BackupError, match=f"{unwritable}: cannot write the backup there"):
            backup_sqlite(database.settings.database_url, unwritable)
    database.dispose()


def test_check_backup_refuses_files_it_cannot_restore(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(BackupError, match="notes.txt: neither an SQLite database nor a pg_dump archive"):
        check_backup(text)
    with pytest.raises(BackupError, match="missing.sqlite3: file not found"):
        check_backup(tmp_path / "missing.sqlite3")
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="not a HelpLoop database"):
        check_backup(other)
    newer = tmp_path / "newer.sqlite3"
    database = _database(tmp_path, "newer.sqlite3")
    database.dispose()
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(BackupError, match="made by a newer HelpLoop .schema revision 9999"):
        check_backup(newer)


def test_restore_swaps_the_backup_in_and_keeps_the_database_it_replaced(tmp_path: Path) -> None:
    database = _database(tmp_path)
    _add_intents(database, "card_arrival")
    backup_sqlite(database.settings.database_url, tmp_path / "monday.sqlite3")
    _add_intents(database, "added_after_the_backup")
    database.dispose()
    info = restore_sqlite(database.settings.database_url, tmp_path / "monday.sqlite3")
    assert info.revision == migrate.head_revision() and info.previous is not None
    assert _intents(tmp_path / "helploop.sqlite3") == ["card_arrival"]
    assert _intents(info.previous) == ["added_after_the_backup", "card_arrival"]  # nothing lost
    reopened = Database(database.settings)
    with reopened.session() as session:
        assert session.scalar(select(func.count()).select_from(Intent)) == 1
    reopened.dispose()
    with pytest.raises(BackupError, match="is the database itself"):
        restore_sqlite(database.settings.database_url, tmp_path / "helploop.sqlite3")


def _run(settings: Any, *args: str) -> Any:
    from click.testing import CliRunner

    from serving.cli import main

    return CliRunner().invoke(main, list(args), obj={"settings": settings}, catch_exceptions=False)


def test_cli_backup_and_restore_migrate_an_older_backup(tmp_path: Path) -> None:
    old = _database(tmp_path / "old", revision="0021")  # a backup taken before the newest migration
    _add_intents(old, "card_arrival")
    made = _run(old.settings, "db", "backup", str(tmp_path / "old.sqlite3"))
    assert made.exit_code == 0, made.output
    assert "schema revision 0021) to" in made.output
    old.dispose()
    current = _database(tmp_path / "now")
    _add_intents(current, "something_newer")
    current.dispose()
    unconfirmed = _run(current.settings, "db", "restore", str(tmp_path / "old.sqlite3"))
    assert unconfirmed.exit_code == 2 and "is a good backup (schema revision 0021). Stop the web app" in (
        unconfirmed.output
    )
    assert _intents(tmp_path / "now" / "helploop.sqlite3") == ["something_newer"]  # untouched
    done = _run(current.settings, "db", "restore", str(tmp_path / "old.sqlite3"), "--yes")
    assert done.exit_code == 0, done.output
    assert f"(schema revision 0021, now {migrate.head_revision()})" in done.output
    assert "the database it replaced is at" in done.output
    assert _intents(tmp_path / "now" / "helploop.sqlite3") == ["card_arrival"]
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    refused = _run(current.settings, "db", "restore", str(bad), "--yes")
    assert refused.exit_code == 2 and "bad.sqlite3: " in refused.output
    assert _intents(tmp_path / "now" / "helploop.sqlite3") == ["card_arrival"]
    postgres = load_settings(
        {
            "environment": "testing",
            "instance_path": str(tmp_path),
            "database_url": "postgresql+psycopg://u@h/db",
        },
        environ={},
    )
    refused = _run(postgres, "db", "backup", str(tmp_path / "pg.dump"))  # PostgreSQL goes to pg_dump ...
    assert refused.exit_code == 2 and "error: pg_dump " in refused.output  # ... which says why not
    assert not (tmp_path / "pg.dump").exists() and not (tmp_path / "pg.dump.partial").exists()


def test_restore_is_refused_while_another_database_holds_the_file_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _database(tmp_path)  # as the web app would: open, holding the in-use lock
    _add_intents(database, "card_arrival")
    backup_sqlite(database.settings.database_url, tmp_path / "monday.sqlite3")
    _add_intents(database, "added_after_the_backup")
    with pytest.raises(BackupError, match="is open in another process .*nothing was changed"):
        restore_sqlite(database.settings.database_url, tmp_path / "monday.sqlite3")
    assert not list(tmp_path.glob("*.before-restore-*")) and not list(tmp_path.glob("*.restoring"))
    with database.session() as session:  # the running app goes on undisturbed
        assert session.scalar(select(func.count()).select_from(Intent)) == 2
    database.dispose()
    restore_sqlite(database.settings.database_url, tmp_path / "monday.sqlite3")
    assert _intents(tmp_path / "helploop.sqlite3") == ["card_arrival"]
    # A process starting while a restore holds the file waits for it, then gives up with a clear error.
    monkeypatch.setattr(Database, "WAIT_FOR_RESTORE_SECONDS", 0.3)
    with exclusive_use(tmp_path / "helploop.sqlite3"):
        with pytest.raises(DatabaseInUse, match="helploop.sqlite3 is in use"):
            Database(database.settings)
    Database(database.settings).dispose()  # released: opens at once


def test_cli_restore_refuses_while_another_process_runs_and_not_after_it_died(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    database = _database(tmp_path)
    _add_intents(database, "card_arrival")
    backup_sqlite(database.settings.database_url, tmp_path / "monday.sqlite3")
    _add_intents(database, "added_after_the_backup")
    database.dispose()
    holder = subprocess.Popen(  # a stand-in for the web app: another process with the database open
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from core.db import Database
                from core.settings import load_settings
                settings = load_settings({{"environment": "testing", "instance_path": {str(tmp_path)!r},
                    "database_url": {database.settings.database_url!r}}}, environ={{}})
                database = Database(settings)
                print("open", flush=True)
                time.sleep(60)
                """
            ),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        refused = _run(database.settings, "db", "restore", str(tmp_path / "monday.sqlite3"), "--yes")
        assert refused.exit_code == 2 and "is open in another process" in refused.output
        assert _intents(tmp_path / "helploop.sqlite3") == ["added_after_the_backup", "card_arrival"]
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    done = _run(database.settings, "db", "restore", str(tmp_path / "monday.sqlite3"), "--yes")
    assert done.exit_code == 0, done.output  # a killed process holds no lock
    assert _intents(tmp_path / "helploop.sqlite3") == ["card_arrival"]
