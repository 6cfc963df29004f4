"""Model bundles beside the database backups, so that a restored installation can serve without retraining.

A database backup alone names the models that serve (the registry and the deployment) but holds none of
their files. ``backup_bundles`` copies into ``<backup folder>/models/<version>`` the bundles of the models
that serve now and those a rollback returns to (``model_retention.model_roles``), once per version: a bundle
never changes after its training run wrote it. Copies that neither the live database nor any database backup
kept in the folder needs are removed, so the folder holds what its backups can use and no more.
``restore_bundles`` does the reverse after ``helploop db restore``: each model the restored database serves
or rolls back to whose bundle is missing is copied back to its registered path.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.backup import DUMP_SUFFIX, SIDECAR_SUFFIX, is_sqlite_file, read_only
from core.db import Database
from core.models import ModelVersion
from training.model_retention import folder_bytes, model_roles

log = logging.getLogger(__name__)

MODELS_FOLDER = "models"  # inside the backup folder


@dataclass
class BundleCopies:
    copied: list[str] = field(default_factory=list)  # versions copied now
    present: list[str] = field(default_factory=list)  # already there from an earlier backup
    removed: list[str] = field(default_factory=list)  # copies no backup needs any more
    missing: dict[str, str] = field(default_factory=dict)  # version -> why there was nothing to copy
    copied_bytes: int = 0
    unreadable: list[str] = field(default_factory=list)  # backups whose needs are unknown: nothing removed


def bundle_copies(folder: Path) -> dict[str, Path]:
    """Version -> its complete copy in ``folder/models`` (a half-written ``.partial`` is not one)."""
    models = folder / MODELS_FOLDER
    if not models.is_dir():
        return {}
    return {p.name: p for p in models.iterdir() if p.is_dir() and not p.name.endswith(".partial")}


def _roles_in(session: Session) -> dict[str, Path]:
    """Version -> registered bundle path of every model that serves or a rollback returns to."""
    roles = model_roles(session)
    if not roles:
        return {}
    rows = session.execute(  # two columns: old backups' schemas have them too
        select(ModelVersion.version, ModelVersion.bundle_path).where(ModelVersion.version.in_(roles))
    ).all()
    return {version: Path(bundle_path) for version, bundle_path in rows}


def needed_by_backups(paths: Iterable[Path]) -> tuple[set[str], list[Path]]:
    """The versions the database backup files would serve or roll back to once restored, and the backups
    whose needs could not be read. A backup's sidecar (``<file>.models.json``, written with it) says; an
    SQLite backup without one is read; a pg_dump archive without one cannot be (unreadable); files that are
    neither are no backups, and are skipped."""
    needed: set[str] = set()
    unreadable: list[Path] = []
    for path in paths:
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if sidecar.is_file():
            try:
                needed |= set(json.loads(sidecar.read_text())["versions"])
                continue
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("unreadable %s: %s", sidecar, exc)
        if path.suffix == DUMP_SUFFIX:
            unreadable.append(path)
            continue
        if not is_sqlite_file(path):
            continue
        engine = create_engine("sqlite://", creator=lambda path=path: read_only(path))
        try:
            with Session(engine) as session:
                needed |= set(_roles_in(session))
        except Exception as exc:  # noqa: BLE001 - any failure: this backup's needs are unknown
            log.warning("could not read the models of backup %s: %s", path, exc)
            unreadable.append(path)
        finally:
            engine.dispose()
    return needed, unreadable


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a bundle beside its target and rename it into place: a crash never leaves a half copy named as
    a whole one."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, partial, symlinks=False)
    partial.rename(target)


def backup_bundles(database: Database, folder: Path, *, backup_file: Path | None = None) -> BundleCopies:
    """Copy the bundles the live database serves or rolls back to into ``folder/models``; drop the copies
    that neither it nor any database backup in ``folder`` (``*.sqlite3``, ``*.dump``) needs. With
    ``backup_file`` (the backup just taken), write its sidecar: the versions it needs, so that a later run
    need not open it (a pg_dump archive cannot be read without restoring it)."""
    report = BundleCopies()
    with database.session() as session:
        wanted = _roles_in(session)
    if backup_file is not None:
        sidecar = backup_file.with_name(backup_file.name + SIDECAR_SUFFIX)
        sidecar.write_text(json.dumps({"versions": sorted(wanted)}))
    have = bundle_copies(folder)
    for version, bundle in sorted(wanted.items()):
        if version in have:
            report.present.append(version)
        elif not (bundle / "manifest.json").is_file():
            report.missing[version] = f"no bundle at {bundle} (pruned or moved)"
        else:
            _copy_tree(bundle, folder / MODELS_FOLDER / version)
            report.copied.append(version)
            report.copied_bytes += folder_bytes(folder / MODELS_FOLDER / version)
    needed, unreadable = needed_by_backups(sorted([*folder.glob("*.sqlite3"), *folder.glob("*.dump")]))
    if unreadable:  # what they need is unknown: delete nothing this time
        report.unreadable = [str(p) for p in unreadable]
        return report
    for version, copy in sorted(bundle_copies(folder).items()):
        if version not in set(wanted) | needed:
            shutil.rmtree(copy)
            report.removed.append(version)
    for partial in (folder / MODELS_FOLDER).glob("*.partial"):  # left by a copy that was interrupted
        shutil.rmtree(partial, ignore_errors=True)
    return report


@dataclass
class BundleRestore:
    restored: list[tuple[str, Path]] = field(default_factory=list)  # (version, where it was copied to)
    missing: list[tuple[str, Path, str]] = field(default_factory=list)  # (version, where it belongs, why)


def restore_bundles(database: Database, folder: Path) -> BundleRestore:
    """After a restore: copy back from ``folder/models`` each bundle the database serves or rolls back to and
    that is not on disk; list the ones still missing (retrain, or copy the model folder back)."""
    report = BundleRestore()
    with database.session() as session:
        wanted = _roles_in(session)
    copies = bundle_copies(folder)
    for version, bundle in sorted(wanted.items()):
        if (bundle / "manifest.json").is_file():
            continue
        if version not in copies:
            report.missing.append((version, bundle, f"{folder / MODELS_FOLDER} has no copy"))
        elif bundle.exists():  # something without a manifest: not ours to overwrite
            report.missing.append(
                (version, bundle, f"{bundle} exists but is no bundle: move it away and restore again")
            )
        else:
            _copy_tree(copies[version], bundle)
            report.restored.append((version, bundle))
    return report


def copies_summary(folder: Path) -> tuple[int, int]:
    """(number of bundle copies, their bytes) in a backup folder, for the jobs page."""
    copies = bundle_copies(folder)
    return len(copies), sum(folder_bytes(p) for p in copies.values())
