"""Model bundles beside the database backups: the ones that serve and that a rollback returns to are copied
once per version, kept while a backup in the folder needs them, and copied back by a restore."""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core import migrate
from core.backup import scheduled_backup
from core.db import Database
from core.registry import register_model_version, set_deployment
from core.settings import load_settings
from training.model_backup import MODELS_FOLDER, backup_bundles, bundle_copies, restore_bundles
from training.model_retention import folder_bytes


def _database(tmp_path: Path) -> Database:
    settings = load_settings(
        {
            "environment": "testing",
            "instance_path": str(tmp_path / "instance"),
            "database_url": f"sqlite:///{tmp_path / 'live.sqlite3'}",
            "model_dir": str(tmp_path / "models"),
        },
        environ={},
    )
    database = Database(settings)
    migrate.upgrade(database.engine)
    return database


def _register(database: Database, version: str, *, size: int = 1000, on_disk: bool = True) -> Path:
    folder = Path(database.settings.model_dir) / version
    if on_disk:
        (folder / "onnx").mkdir(parents=True)
        (folder / "manifest.json").write_text(f'{{"version": "{version}"}}')
        (folder / "onnx" / "model.onnx").write_bytes(version.encode() * size)
    with database.session() as session:
        register_model_version(
            session,
            version=version,
            bundle_path=str(folder),
            data_hash="h" * 64,
            metrics={},
            kb_version_id=None,
        )
    return folder


def _deploy(database: Database, **arms: Any) -> None:
    with database.session() as session:
        set_deployment(session, actor="omar", reason="test", **arms)


def _same(a: Path, b: Path) -> bool:
    compared = filecmp.dircmp(a, b)
    return (
        not compared.diff_files
        and not compared.left_only
        and not compared.right_only
        and all(_same(a / sub, b / sub) for sub in compared.common_dirs)
    )


def test_bundles_are_copied_once_kept_while_a_backup_needs_them_and_copied_back(tmp_path: Path) -> None:
    database = _database(tmp_path)
    url, folder = database.settings.database_url, tmp_path / "backups"
    bundles = {v: _register(database, v, size=100 * i) for i, v in enumerate(("v1", "v2", "v3", "v4"), 1)}
    _deploy(database, production_version="v1")
    _deploy(database, production_version="v2")
    _deploy(database, production_version="v2", canary_version="v3", canary_share=0.1)
    start = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    scheduled_backup(url, folder, keep=2, now=start)
    first = backup_bundles(database, folder)
    # Serving: v2 (production) and v3 (canary); a rollback returns to v1. v4 is only a candidate.
    assert first.copied == ["v1", "v2", "v3"] and first.present == [] and first.removed == []
    assert sorted(bundle_copies(folder)) == ["v1", "v2", "v3"] and first.missing == {}
    assert first.copied_bytes == sum(folder_bytes(bundles[v]) for v in ("v1", "v2", "v3")) > 0
    assert all(_same(bundles[v], folder / MODELS_FOLDER / v) for v in ("v1", "v2", "v3"))
    again = backup_bundles(database, folder)
    assert (again.copied, again.present, again.copied_bytes) == ([], ["v1", "v2", "v3"], 0)

    # v4 replaces v2 without the canary ever being promoted: the live database no longer needs v3, but the
    # backup of Dec 1 does (restored, it would serve v3 as canary), so its copy stays ...
    _deploy(database, production_version="v4")
    scheduled_backup(url, folder, keep=2, now=start + timedelta(days=1))
    later = backup_bundles(database, folder)
    assert later.copied == ["v4"] and later.present == ["v1", "v2"] and later.removed == []
    assert sorted(bundle_copies(folder)) == ["v1", "v2", "v3", "v4"]
    # ... until that backup is rotated away. While a backup in the folder cannot be read, what it needs is
    # unknown and nothing is removed; a file that is not SQLite at all is no backup and does not count.
    scheduled_backup(url, folder, keep=2, now=start + timedelta(days=2))
    (folder / "notes.sqlite3").write_text("not a database")
    damaged = folder / "damaged.sqlite3"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    held = backup_bundles(database, folder)
    assert held.removed == [] and held.unreadable == [str(damaged)]
    damaged.unlink()
    (folder / MODELS_FOLDER / "v7.partial").mkdir()  # an interrupted copy: neither counted nor kept
    assert "v7.partial" not in bundle_copies(folder)
    assert backup_bundles(database, folder).removed == ["v3"]
    assert sorted(bundle_copies(folder)) == ["v1", "v2", "v4"]
    assert not (folder / MODELS_FOLDER / "v7.partial").exists()

    # A shadow whose bundle is gone cannot be copied: reported, not fatal.
    _register(database, "v5", on_disk=False)
    _deploy(database, production_version="v4", shadow_version="v5")
    missing = backup_bundles(database, folder)
    assert list(missing.missing) == ["v5"] and "no bundle at" in missing.missing["v5"]

    # The model folder is lost: the restore copies back every bundle it needs that has a copy.
    shutil.rmtree(tmp_path / "models")
    restored = restore_bundles(database, folder)
    assert [v for v, _ in restored.restored] == ["v1", "v2", "v4"]
    assert [(v, why) for v, _, why in restored.missing] == [("v5", f"{folder / MODELS_FOLDER} has no copy")]
    assert all(_same(folder / MODELS_FOLDER / v, bundles[v]) for v in ("v1", "v2", "v4"))
    assert not bundles["v3"].exists()  # not needed by the restored database: not copied
    assert restore_bundles(database, folder).restored == []  # all there now
    # A folder where a bundle belongs that is no bundle is left alone, and said so.
    shutil.rmtree(bundles["v4"])
    bundles["v4"].mkdir()
    (bundles["v4"] / "notes.txt").write_text("the operator's")
    (refused,) = [m for m in restore_bundles(database, folder).missing if m[0] == "v4"]
    assert "exists but is no bundle: move it away" in refused[2]
    assert [p.name for p in bundles["v4"].iterdir()] == ["notes.txt"]
    database.dispose()


def test_cli_backup_copies_the_models_and_restore_brings_them_back(tmp_path: Path) -> None:
    from serving.cli import main

    database = _database(tmp_path)
    bundle = _register(database, "v1")
    _deploy(database, production_version="v1")
    database.dispose()
    runner = CliRunner()
    out = tmp_path / "backups" / "monday.sqlite3"
    (tmp_path / "backups").mkdir()
    (tmp_path / "bare").mkdir()
    made = runner.invoke(main, ["db", "backup", str(out)], obj={"settings": database.settings})
    assert made.exit_code == 0, made.output
    assert f"copied 1 model bundle(s) (0.0 MB) to {tmp_path / 'backups' / MODELS_FOLDER}: v1" in made.output
    again = runner.invoke(
        main,
        ["db", "backup", str(tmp_path / "backups" / "tuesday.sqlite3")],
        obj={"settings": database.settings},
    )
    assert again.exit_code == 0 and "already in" in again.output and "copied" not in again.output
    bare = runner.invoke(
        main,
        ["db", "backup", "--no-models", str(tmp_path / "bare" / "bare.sqlite3")],
        obj={"settings": database.settings},
    )
    assert bare.exit_code == 0 and "bundle" not in bare.output
    assert not (tmp_path / "bare" / MODELS_FOLDER).exists()

    shutil.rmtree(tmp_path / "models")
    done = runner.invoke(main, ["db", "restore", str(out), "--yes"], obj={"settings": database.settings})
    assert done.exit_code == 0, done.output
    assert (
        f"model v1: bundle copied back from {tmp_path / 'backups' / MODELS_FOLDER} to {bundle}" in done.output
    )
    assert _same(bundle, tmp_path / "backups" / MODELS_FOLDER / "v1")
    # Restored from a file with no copies beside it: the command says what is missing and what to do.
    shutil.rmtree(tmp_path / "models")
    warned = runner.invoke(
        main,
        ["db", "restore", str(tmp_path / "bare" / "bare.sqlite3"), "--yes"],
        obj={"settings": database.settings},
    )
    assert warned.exit_code == 0, warned.output
    assert f"warning: model v1 serves (or a rollback returns to it) but its bundle is not at {bundle}" in (
        warned.output
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = _database(tmp_path)
    else:
        settings = load_settings(
            {
                "environment": "testing",
                "instance_path": str(tmp_path / "instance"),
                "database_url": request.getfixturevalue("postgres_schema_url"),
                "model_dir": str(tmp_path / "models"),
            },
            environ={},
        )
        database = Database(settings)
    _clear(database)
    yield database
    _clear(database)  # PostgreSQL's schema is shared by the session: leave no committed rows
    database.dispose()


def _clear(database: Database) -> None:
    from sqlalchemy import delete

    from core.models import Deployment, ModelVersion

    with database.session() as session:
        session.execute(delete(Deployment))
        session.execute(delete(ModelVersion))


def test_cli_models_backup_and_restore_work_on_any_database(any_database: Database, tmp_path: Path) -> None:
    from serving.cli import main

    database = any_database
    bundle = _register(database, "v1")
    _register(database, "v2")
    _deploy(database, production_version="v1")
    _deploy(database, production_version="v2")  # v1: what a rollback returns to
    runner = CliRunner()
    folder = tmp_path / "offsite"
    made = runner.invoke(main, ["models", "backup", str(folder)], obj={"settings": database.settings})
    assert made.exit_code == 0, made.output
    assert f"models/ in {folder}: copied 2 (0.0 MB), 0 there already, 0 removed" in made.output
    shutil.rmtree(tmp_path / "models")
    back = runner.invoke(main, ["models", "restore", str(folder)], obj={"settings": database.settings})
    assert back.exit_code == 0, back.output
    assert f"model v1: bundle copied back to {bundle}" in back.output and _same(
        bundle, folder / "models" / "v1"
    )
    again = runner.invoke(main, ["models", "restore", str(folder)], obj={"settings": database.settings})
    assert again.exit_code == 0 and "every bundle the database needs is in place" in again.output
    shutil.rmtree(tmp_path / "models")
    shutil.rmtree(folder / "models" / "v2")
    short = runner.invoke(main, ["models", "restore", str(folder)], obj={"settings": database.settings})
    assert short.exit_code == 1 and "error: model v2 has no bundle at" in short.output
