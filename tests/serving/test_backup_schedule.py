"""The daily backup of the embedded database: scheduled by a worker when HELPLOOP_BACKUP_DIR is set, run as
a job, the oldest files beyond HELPLOOP_BACKUP_KEEP removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core import migrate
from core.backup import check_backup, scheduled_backup
from core.db import Database
from core.models import Job
from core.settings import Settings, SettingsError, load_settings
from serving.job_kinds import backup_params
from serving.job_kinds import install as install_job_kinds
from training.jobs import Worker, schedule_due


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings({"environment": "testing", "instance_path": str(tmp_path), **overrides}, environ={})


def test_backup_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="backup_keep must be 1 or more, not 0"):
        _settings(tmp_path, backup_keep=0)
    postgres = _settings(tmp_path, backup_dir=str(tmp_path / "b"), database_url="postgresql+psycopg://u@h/db")
    assert backup_params(postgres) == {"dir": str(tmp_path / "b"), "keep": 7, "models": True}  # pg_dump
    assert backup_params(_settings(tmp_path)) is None  # no folder: no schedule


def test_a_worker_backs_up_daily_and_keeps_the_newest(tmp_path: Path) -> None:
    install_job_kinds()
    folder = tmp_path / "backups"
    settings = _settings(tmp_path, backup_dir=str(folder), backup_keep=2)
    database = Database(settings)
    migrate.upgrade(database.engine)
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    with database.session() as session:
        (job,) = schedule_due(session, settings, now=now)
        assert (job.kind, job.params, job.created_by) == (
            "backup",
            {"dir": str(folder), "keep": 2, "models": True},
            "schedule",
        )
        assert schedule_due(session, settings, now=now + timedelta(hours=23)) == []  # once a day
    worker = Worker(database, settings)
    assert worker.run_once() == job.id
    with database.session() as session:
        done = session.get(Job, job.id)
        assert done.status == "succeeded", done.error
        assert done.result["revision"] == migrate.head_revision() and done.result["removed"] == 0
        assert done.result["models"] == {  # no model yet: nothing to copy beside it
            "copied": [],
            "present": [],
            "removed": [],
            "missing": {},
            "copied_bytes": 0,
            "unreadable": [],
        }
    (written,) = folder.glob("helploop-*.sqlite3")
    assert str(written) == done.result["path"] and check_backup(written) == migrate.head_revision()
    # Three more days (after the worker's run, which is stamped with the real time): the two newest stay.
    stamps = [datetime.now(UTC) + timedelta(days=d) for d in (1, 2, 3)]
    removed = [scheduled_backup(settings.database_url, folder, keep=2, now=t)[1] for t in stamps]
    assert [len(r) for r in removed] == [0, 1, 1]
    assert sorted(p.name for p in folder.glob("helploop-*.sqlite3")) == [
        f"helploop-{t:%Y%m%dT%H%M%SZ}.sqlite3" for t in stamps[1:]
    ]
    assert written.name not in {p.name for p in folder.iterdir()}
    with database.session() as session:
        assert session.scalars(select(Job.status).where(Job.kind == "backup")).all() == ["succeeded"]
    database.dispose()
