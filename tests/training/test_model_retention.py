"""Pruning old model bundles, on SQLite and PostgreSQL: what is kept, what is deleted, and that a pruned
version can no longer be deployed or rolled back to."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, select

from core.db import Database
from core.models import Deployment, Job, ModelVersion, OpsEvent
from core.registry import current_deployment, register_model_version, set_deployment
from core.settings import Settings, load_settings
from training import model_retention
from training.model_retention import protected_versions, prune_models
from training.rollout import RolloutError, apply_action, rollback_target

VERSIONS = [f"v{i}" for i in range(1, 9)]


def _clear(db: Database) -> None:
    with db.session() as session:
        for table in (Job, Deployment, OpsEvent, ModelVersion):
            session.execute(delete(table))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    from core import migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'models.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    settings = load_settings(
        {"environment": "testing", "instance_path": str(tmp_path / "instance"), "database_url": url},
        environ={},
    )
    db = Database(settings)
    migrate.upgrade(db.engine)
    _clear(db)
    yield db
    _clear(db)  # PostgreSQL's schema is shared by the session: leave no committed rows
    db.dispose()


def bundle(folder: Path, size: int = 1000) -> str:
    (folder / "encoder").mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "encoder" / "weights.bin").write_bytes(b"x" * size)
    return str(folder)


def register(db: Database, version: str, path: str) -> None:
    with db.session() as session:
        register_model_version(
            session, version=version, bundle_path=path, data_hash="h" * 64, metrics={}, kb_version_id=None
        )


@pytest.fixture
def history(database: Database, tmp_path: Path) -> dict[str, Path]:
    """v0 registered from a folder outside the model folder, v1..v8 built into it. Production went
    v1 -> v2 -> v3 -> v4; v5 is the canary; v6..v8 are newer candidates."""
    model_dir = Path(database.settings.model_dir)
    paths = {"v0": Path(bundle(tmp_path / "elsewhere" / "v0"))}
    register(database, "v0", str(paths["v0"]))
    for version in VERSIONS:
        paths[version] = Path(bundle(model_dir / version, size=1000 + int(version[1:])))
        register(database, version, str(paths[version]))
    with database.session() as session:
        for version in ("v1", "v2", "v3"):
            set_deployment(session, production_version=version, actor="omar", reason="promote")
        set_deployment(
            session,
            production_version="v4",
            canary_version="v5",
            canary_share=0.1,
            actor="omar",
            reason="canary",
        )
    return paths


def test_prune_keeps_what_serves_what_a_rollback_needs_the_newest_and_foreign_bundles(
    database: Database, history: dict[str, Path]
) -> None:
    settings = database.settings
    with database.session() as session:
        assert protected_versions(session, keep=2, keep_rollbacks=2) == {
            "v4": "serving as production",
            "v5": "serving as canary",
            "v3": "a rollback can return to it",
            "v2": "a rollback can return to it",
            "v8": "among the 2 newest",
            "v7": "among the 2 newest",
        }
    dry = prune_models(database, settings, keep=2, keep_rollbacks=2, actor="omar", dry_run=True)
    assert [(p.version, p.bytes) for p in dry.pruned] == [("v6", 1008), ("v1", 1003)]
    assert all(path.is_dir() for path in history.values())  # a dry run deletes nothing
    with database.session() as session:
        assert session.scalars(select(ModelVersion).where(ModelVersion.pruned_at.is_not(None))).all() == []

    report = prune_models(database, settings, keep=2, keep_rollbacks=2, actor="omar")
    assert [p.version for p in report.pruned] == ["v6", "v1"] and report.freed_bytes == 2011
    assert {k.version: k.why for k in report.kept}["v0"].startswith("outside ")
    assert not history["v6"].exists() and not history["v1"].exists()
    assert all(history[v].is_dir() for v in ("v0", "v2", "v3", "v4", "v5", "v7", "v8"))
    with database.session() as session:
        pruned = {m.version: m.pruned_by for m in session.scalars(select(ModelVersion)) if m.pruned_at}
        assert pruned == {"v6": "omar", "v1": "omar"}  # the rows stay, marked
        with pytest.raises(RolloutError, match="v6 was pruned on .* by omar"):
            apply_action(session, action="shadow", version="v6", actor="omar", reason="try it")
        assert current_deployment(session).production_version == "v4"  # nothing changed
    # Pruning again finds nothing more to delete under the same rules.
    assert prune_models(database, settings, keep=2, keep_rollbacks=2, actor="omar").pruned == []
    with database.session() as session:  # one event, for the run that pruned (not the dry run, not the last)
        (event,) = session.scalars(select(OpsEvent).where(OpsEvent.kind == "models.pruned")).all()
        assert event.data["versions"] == ["v6", "v1"] and event.data["bytes"] == 2011
        assert (
            event.text.startswith("omar pruned 2 model bundle(s)")
            and event.data["path"] == "/operator/models"
        )


def test_rollback_skips_a_pruned_production_and_says_when_none_is_left(
    database: Database, history: dict[str, Path]
) -> None:
    settings = database.settings
    prune_models(database, settings, keep=1, keep_rollbacks=1, actor="omar")  # keeps v3 for a rollback
    with database.session() as session:
        assert {m.version for m in session.scalars(select(ModelVersion)) if m.pruned_at} == {
            "v1",
            "v2",
            "v6",
            "v7",
        }
        session.scalars(select(ModelVersion).where(ModelVersion.version == "v3")).one().pruned_at = (
            session.scalars(select(ModelVersion).where(ModelVersion.version == "v2")).one().pruned_at
        )
    with database.session() as session:
        target, why_not = rollback_target(session, current_deployment(session).production_version)
        assert target is None and "still there (pruned)" in why_not
        with pytest.raises(RolloutError, match="no earlier production model .* still there"):
            apply_action(session, action="rollback", actor="omar", reason="bad model")
        apply_action(session, action="promote", version="v5", actor="omar", reason="canary went well")
    with database.session() as session:  # v4 was production before v5 and is not pruned: back to it
        assert rollback_target(session, "v5") == ("v4", "")  # what the runs page offers
        row = apply_action(session, action="rollback", actor="omar", reason="bad model")
        assert row.production_version == "v4"


def refuse_to_delete(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Pruning's rmtree fails with "Permission denied" on folders called ``name`` (and deletes the rest)."""
    real = shutil.rmtree

    def stubborn(path: str, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", path)
        real(path, *args, **kwargs)

    monkeypatch.setattr(model_retention.shutil, "rmtree", stubborn)


def test_a_folder_that_cannot_be_deleted_is_reported_and_tried_again(
    database: Database, history: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = database.settings
    real = shutil.rmtree
    refuse_to_delete(monkeypatch, "v6")
    report = prune_models(database, settings, keep=2, keep_rollbacks=2, actor="omar")
    assert set(report.failed) == {"v6"} and "Permission denied" in report.failed["v6"]
    assert report.freed_bytes == 1003 and history["v6"].is_dir() and not history["v1"].exists()
    with database.session() as session:  # the event that counted v6 as freed is followed by one that says not
        events = session.scalars(
            select(OpsEvent).where(OpsEvent.kind == "models.pruned").order_by(OpsEvent.id)
        ).all()
        (v6,) = [p for p in report.pruned if p.version == "v6"]
        assert len(events) == 2 and events[0].data["bytes"] == report.freed_bytes + v6.bytes
        assert events[1].data["failed"] == report.failed and events[1].data["bytes_not_freed"] == v6.bytes > 0
        assert events[1].text.startswith(
            "1 of those bundle(s) could not be deleted (0.0 MB still on disk): v6"
        )
    with database.session() as session:  # marked all the same: it must not be deployed half-deleted
        with pytest.raises(RolloutError, match="v6 was pruned"):
            apply_action(session, action="canary", version="v6", actor="omar", reason="try")
    monkeypatch.setattr(model_retention.shutil, "rmtree", real)
    again = prune_models(database, settings, keep=2, keep_rollbacks=2, actor="later")
    assert [p.version for p in again.pruned] == ["v6"] and again.failed == {}
    assert not history["v6"].exists()
    with database.session() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == "v6")).one()
        assert row.pruned_by == "omar"  # the first pruning is the one on record


def test_before_any_deployment_the_newest_model_serves_and_is_kept(
    database: Database, tmp_path: Path
) -> None:
    model_dir = Path(database.settings.model_dir)
    for version in ("a1", "a2", "a3"):
        register(database, version, bundle(model_dir / version))
    with database.session() as session:
        assert protected_versions(session, keep=1, keep_rollbacks=2) == {
            "a3": "serving (newest model, no deployment yet)"
        }
        with pytest.raises(ValueError, match="keep must be at least 1"):
            protected_versions(session, keep=0, keep_rollbacks=2)
    report = prune_models(database, database.settings, keep=1, keep_rollbacks=2, actor="omar")
    assert [p.version for p in report.pruned] == ["a2", "a1"]
    assert (model_dir / "a3").is_dir() and not (model_dir / "a1").exists()


@pytest.mark.parametrize("stuck", [False, True], ids=["deleted", "folder-stuck"])
def test_a_training_run_prunes_when_keep_models_is_set(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, stuck: bool
) -> None:
    """``HELPLOOP_KEEP_MODELS``: after registering its model, the run deletes the bundles beyond it; one whose
    folder cannot be deleted is reported apart, not as pruned. (SQLite only: it commits a knowledge base,
    which the PostgreSQL schema shared by the session must not keep.)"""
    from core import migrate
    from core.kb_files import IntentData, KnowledgeBaseData
    from core.knowledge_base import import_knowledge_base
    from training import build, jobs

    settings = Settings(**{**settings.__dict__, "keep_models": 1})
    database = Database(settings)
    migrate.upgrade(database.engine)
    with database.session() as session:
        import_knowledge_base(
            session,
            incoming=KnowledgeBaseData(
                {"hello": IntentData(name="hello", answer="Hi!", examples=["hi", "hello", "hey there"])}
            ),
            source="test",
        )
    built = iter(["t1", "t2", "t3"])

    def fake_fit(snapshot: Any, settings: Settings, **_: Any) -> tuple[Any, Path, dict[str, Any]]:
        version = next(built)
        folder = Path(bundle(Path(settings.model_dir) / version))
        engine = SimpleNamespace(version=version, manifest={"data_hash": "d" * 64})
        return engine, folder, {"gate": {"decision": "no_baseline"}}

    monkeypatch.setattr(build, "fit_bundle", fake_fit)
    if stuck:
        refuse_to_delete(monkeypatch, "t2")
    results = [jobs._train(database, settings, {}, lambda *a, **k: None) for _ in range(3)]
    # t1 serves (pinned as production when t2 is registered), t3 is the newest: t2 goes.
    model_dir = Path(settings.model_dir)
    if stuck:
        assert [r["pruned_models"] for r in results] == [[], [], []]
        assert [sorted(r["prune_failed"]) for r in results] == [[], [], ["t2"]]
        assert "Permission denied" in results[2]["prune_failed"]["t2"] and (model_dir / "t2").is_dir()
    else:
        assert [r["pruned_models"] for r in results] == [[], [], ["t2"]]
        assert [r["prune_failed"] for r in results] == [{}, {}, {}]
        assert not (model_dir / "t2").exists()
    assert (model_dir / "t1").is_dir() and (model_dir / "t3").is_dir()
    with database.session() as session:
        assert session.scalars(select(ModelVersion).where(ModelVersion.version == "t2")).one().pruned_by == (
            "training run"
        )
    database.dispose()


@pytest.mark.postgres
def test_a_deployment_and_a_prune_of_the_same_version_serialise_on_postgresql(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    """A deployment that names a version holds its registry row until it commits: a prune that starts
    meanwhile waits, then sees the version deployed and keeps it."""
    import threading

    from core import migrate

    settings = load_settings(
        {"environment": "testing", "instance_path": str(tmp_path), "database_url": postgres_schema_url},
        environ={},
    )
    database = Database(settings)
    migrate.upgrade(database.engine)
    _clear(database)
    try:
        model_dir = Path(settings.model_dir)
        for version in ("p1", "p2", "p3"):
            register(database, version, bundle(model_dir / version))
        with database.session() as session:
            set_deployment(session, production_version="p3", actor="omar", reason="first")
        deploying = database.sessionmaker()
        set_deployment(  # p1 as shadow: its row is locked until this commits
            deploying, production_version="p3", shadow_version="p1", actor="omar", reason="compare"
        )
        reports: list[Any] = []
        pruner = threading.Thread(
            target=lambda: reports.append(
                prune_models(database, settings, keep=1, keep_rollbacks=0, actor="x")
            )
        )
        pruner.start()
        pruner.join(timeout=1.0)
        assert pruner.is_alive() and not reports  # waiting for the deployment's lock
        deploying.commit()
        deploying.close()
        pruner.join(timeout=30)
        assert [p.version for p in reports[0].pruned] == ["p2"]
        assert {k.version: k.why for k in reports[0].kept}["p1"] == "serving as shadow"
        assert (model_dir / "p1").is_dir() and not (model_dir / "p2").exists()
    finally:
        _clear(database)
        database.dispose()
