"""Disk space for model bundles: delete the bundles no one can serve any more.

Every training run writes a bundle (with a large encoder, fine-tuned or given as a folder, several hundred MB)
and nothing deleted them. ``prune_models`` deletes the bundles of old versions while keeping, always:

- what serves now: production, canary and shadow (or, before any deployment, the newest model, which serves);
- the production models a rollback can go back to: the last ``keep_rollbacks`` distinct earlier productions
  of the deployment history;
- the ``keep`` newest models (the candidates an operator may still shadow or promote);
- every bundle outside the model folder (``HELPLOOP_MODEL_DIR``): registered from elsewhere, not ours.

The registry row stays, marked ``pruned_at``/``pruned_by`` (turns, runs and the deployment history name the
version); deploying a pruned version is refused (``core.registry.set_deployment``) and a rollback skips it.
The rows are marked and committed first, then the folders deleted, so a failed deletion never leaves a
version that looks deployable without its files; a folder that could not be deleted is tried again next time.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import Database
from core.events import emit
from core.models import Deployment, ModelVersion, utcnow
from core.registry import current_deployment
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class KeptModel:
    version: str
    why: str


@dataclass
class PrunedModel:
    version: str
    path: str
    bytes: int


@dataclass
class PruneReport:
    pruned: list[PrunedModel] = field(default_factory=list)
    kept: list[KeptModel] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # version -> why its folder is still there
    dry_run: bool = False

    @property
    def deleted_versions(self) -> list[str]:
        """The versions whose bundle folder is gone (``pruned`` less those whose deletion failed)."""
        return [p.version for p in self.pruned if p.version not in self.failed]

    @property
    def freed_bytes(self) -> int:
        return sum(p.bytes for p in self.pruned if p.version not in self.failed)


def folder_bytes(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return path.resolve() != folder.resolve()


ROLLBACKS_KEPT = 2  # earlier production models whose bundles always stay: what `rollback` returns to


def model_roles(session: Session, *, keep_rollbacks: int = ROLLBACKS_KEPT) -> dict[str, str]:
    """Version -> what it does now: serving (an arm of the deployment, or before any deployment the newest
    model), or one of the last ``keep_rollbacks`` earlier productions a rollback returns to."""
    if keep_rollbacks < 0:
        raise ValueError(f"keep_rollbacks must be 0 or more, not {keep_rollbacks}")
    deployment = current_deployment(session)
    if deployment is None:
        newest = session.scalar(select(ModelVersion.version).order_by(ModelVersion.id.desc()).limit(1))
        return {newest: "serving (newest model, no deployment yet)"} if newest else {}
    why: dict[str, str] = {}
    for arm in ("production", "canary", "shadow"):
        version = getattr(deployment, f"{arm}_version")
        if version:
            why.setdefault(version, f"serving as {arm}")
    earlier: list[str] = []
    for version in session.scalars(select(Deployment.production_version).order_by(Deployment.id.desc())):
        if version != deployment.production_version and version not in earlier:
            earlier.append(version)
    for version in earlier[:keep_rollbacks]:
        why.setdefault(version, "a rollback can return to it")
    return why


def protected_versions(
    session: Session, *, keep: int, keep_rollbacks: int, models: Sequence[ModelVersion] | None = None
) -> dict[str, str]:
    """Version -> why its bundle is kept: ``model_roles`` and the ``keep`` newest (``models``: the registry,
    newest first, when the caller has it already)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the newest model), not {keep}")
    why = model_roles(session, keep_rollbacks=keep_rollbacks)
    if models is None:
        models = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).all()
    for model in models[:keep]:
        why.setdefault(model.version, f"among the {keep} newest")
    return why


def prune_models(
    database: Database,
    settings: Settings,
    *,
    keep: int = 5,
    keep_rollbacks: int = ROLLBACKS_KEPT,
    actor: str,
    dry_run: bool = False,
) -> PruneReport:
    """Delete the bundles of the models nothing needs (see the module's docstring). ``dry_run``: report
    what would go, change nothing."""
    model_dir = Path(settings.model_dir)
    report = PruneReport(dry_run=dry_run)
    with database.session() as session:
        # Lock the registry first (PostgreSQL), then read what is deployed: a deployment that names a version
        # locks its row too (core.registry.set_deployment), so it either commits before this reads the
        # deployments, and its version is kept, or waits and then finds the version pruned and is refused.
        query = select(ModelVersion).order_by(ModelVersion.id.desc())
        models = session.scalars(query if dry_run else query.with_for_update()).all()
        keep_why = protected_versions(session, keep=keep, keep_rollbacks=keep_rollbacks, models=models)
        chosen: list[ModelVersion] = []
        for model in models:
            path = Path(model.bundle_path)
            if model.version in keep_why:
                if model.pruned_at is None:
                    report.kept.append(KeptModel(model.version, keep_why[model.version]))
                continue
            if not _inside(path, model_dir):
                if model.pruned_at is None:
                    report.kept.append(KeptModel(model.version, f"outside {model_dir}: not deleted here"))
                continue
            if model.pruned_at is not None and not path.exists():
                continue  # pruned before, nothing left
            chosen.append(model)
            report.pruned.append(PrunedModel(model.version, str(path), folder_bytes(path)))
        if not dry_run:
            now = utcnow()
            fresh = [m for m in chosen if m.pruned_at is None]
            for model in fresh:
                model.pruned_at, model.pruned_by = now, actor[:100]
            if fresh:
                freed = sum(p.bytes for p in report.pruned)
                versions = [m.version for m in fresh]
                emit(
                    session,
                    "models.pruned",
                    f"{actor} pruned {len(versions)} model bundle(s) ({freed / 1e6:,.1f} MB): "
                    f"{', '.join(versions)}. They can no longer be deployed.",
                    path="/operator/models",
                    data={"actor": actor, "versions": versions, "bytes": freed},
                )
    if dry_run:
        return report
    for entry in report.pruned:  # the rows are committed: no version is deployable without its files
        try:
            shutil.rmtree(entry.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the bundle of %s at %s: %s", entry.version, entry.path, exc)
            report.failed[entry.version] = str(exc)
    if report.failed:  # the event above counted them freed: say which were not, and that it will retry
        with database.session() as session:
            kept = sum(p.bytes for p in report.pruned if p.version in report.failed)
            emit(
                session,
                "models.pruned",
                f"{len(report.failed)} of those bundle(s) could not be deleted ({kept / 1e6:,.1f} MB still "
                f"on disk): {', '.join(sorted(report.failed))}. The next prune tries again.",
                path="/operator/models",
                data={"actor": actor, "failed": report.failed, "bytes_not_freed": kept},
            )
    return report


def prune_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[..., None]
) -> dict[str, Any]:
    """The job an operator starts from the Models page (``prune_models`` with the page's choices)."""
    report(0.0, "prune")
    result = prune_models(
        database,
        settings,
        keep=int(params.get("keep", 5)),
        keep_rollbacks=int(params.get("keep_rollbacks", ROLLBACKS_KEPT)),
        actor=str(params.get("actor") or "operator"),
    )
    report(0.99, "done")
    return {
        "pruned": result.deleted_versions,
        "bytes": result.freed_bytes,
        "failed": result.failed,
    }
