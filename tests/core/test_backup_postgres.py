"""Backups of a PostgreSQL database through pg_dump / pg_restore, against the real server: a round trip,
the dump of what a restore replaces, the schema revision read from the archive, and the refusals."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core import migrate
from core.backup import (
    BackupError,
    backup_postgres,
    check_backup,
    helploop_sessions,
    restore_database,
    restore_postgres,
    scheduled_backup,
    stored_backups,
)
from core.db import Database
from core.models import Intent
from core.settings import load_settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(empty_postgres_url: str, tmp_path: Path) -> Iterator[Database]:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("PostgreSQL's client tools (pg_dump, pg_restore) are not installed")
    settings = load_settings(
        {"environment": "testing", "instance_path": str(tmp_path), "database_url": empty_postgres_url},
        environ={},
    )
    database = Database(settings)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


def _intents(database: Database) -> list[str]:
    with database.session() as session:
        return sorted(session.scalars(select(Intent.name)))


def _add(database: Database, name: str) -> None:
    with database.session() as session:
        session.add(Intent(name=name, title=name, answer="a"))


def test_a_pg_dump_round_trip_keeps_what_it_replaced(database: Database, tmp_path: Path) -> None:
    url = database.settings.database_url
    _add(database, "card_arrival")
    info = backup_postgres(url, tmp_path / "monday.dump")
    assert info.revision == migrate.head_revision() and info.bytes > 0
    assert check_backup(tmp_path / "monday.dump") == migrate.head_revision()  # read from the archive
    _add(database, "added_after_the_backup")
    database.engine.dispose()  # the web app and workers are stopped
    restored = restore_postgres(url, tmp_path / "monday.dump")
    assert restored.revision == migrate.head_revision() and restored.previous is not None
    assert _intents(database) == ["card_arrival"]
    # What it replaced was dumped first: restoring that brings the later intent back.
    assert restored.previous.name.startswith("monday.dump.before-restore-")
    database.engine.dispose()
    restore_postgres(url, restored.previous)
    assert _intents(database) == ["added_after_the_backup", "card_arrival"]
    with pytest.raises(BackupError, match="exists: choose another file"):
        backup_postgres(url, tmp_path / "monday.dump")


def test_scheduled_dumps_rotate_and_kinds_are_not_mixed(database: Database, tmp_path: Path) -> None:
    url, folder = database.settings.database_url, tmp_path / "backups"
    start = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    made = [scheduled_backup(url, folder, keep=2, now=start + timedelta(days=d))[0].path for d in range(3)]
    assert [b.path for b in stored_backups(folder)] == made[:0:-1]  # the newest two, newest first
    assert all(p.suffix == ".dump" for p in made) and not made[0].exists()
    sqlite_copy = tmp_path / "copy.sqlite3"
    sqlite_copy.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(BackupError, match="is an SQLite copy, and this database needs a pg_dump archive"):
        restore_database(url, sqlite_copy)
    with pytest.raises(BackupError, match="is not an SQLite copy"):
        restore_database(f"sqlite:///{tmp_path / 'x.sqlite3'}", made[-1])


def test_missing_tools_and_bad_archives_are_refused_with_what_to_do(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = tmp_path / "notes.dump"
    text.write_text("not an archive")
    with pytest.raises(BackupError, match="neither an SQLite database nor a pg_dump archive"):
        check_backup(text)
    real_which = shutil.which

    def without_pg_dump(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name == "pg_dump" else real_which(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", without_pg_dump)
    with pytest.raises(BackupError, match="pg_dump is not installed: .*apt-get install postgresql-client"):
        backup_postgres(database.settings.database_url, tmp_path / "x.dump")


def test_cli_backs_up_and_restores_postgresql_with_the_models(database: Database, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from serving.cli import main

    _add(database, "card_arrival")
    runner = CliRunner()
    out = tmp_path / "b" / "monday.dump"
    out.parent.mkdir()
    made = runner.invoke(main, ["db", "backup", str(out)], obj={"settings": database.settings})
    assert made.exit_code == 0, made.output
    assert f"schema revision {migrate.head_revision()}) to {out}" in made.output
    assert (out.parent / "monday.dump.models.json").read_text() == '{"versions": []}'  # no model yet
    _add(database, "later")
    database.engine.dispose()
    checked = runner.invoke(main, ["db", "restore", str(out)], obj={"settings": database.settings})
    assert checked.exit_code == 2 and "is a good backup" in checked.output
    done = runner.invoke(main, ["db", "restore", str(out), "--yes"], obj={"settings": database.settings})
    assert done.exit_code == 0, done.output
    assert _intents(database) == ["card_arrival"]


def test_restore_is_refused_while_helploop_sessions_are_connected(database: Database, tmp_path: Path) -> None:
    url = database.settings.database_url
    _add(database, "card_arrival")
    backup_postgres(url, tmp_path / "monday.dump")
    _add(database, "later")  # the pool keeps a connection open: as the web app would
    assert helploop_sessions(url) >= 1
    with pytest.raises(BackupError, match=r"HelpLoop session\(s\) are connected .*nothing was changed"):
        restore_postgres(url, tmp_path / "monday.dump")
    assert not list(tmp_path.glob("*.before-restore-*"))
    database.engine.dispose()
    restore_postgres(url, tmp_path / "monday.dump")
    assert _intents(database) == ["card_arrival"]
