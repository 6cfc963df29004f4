"""Wires every job kind into the runner: training's own, plus those of layers beside it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core import channels
from core.backup import scheduled_backup
from core.db import Database
from core.events import deliver_watch, purge_old
from core.kb_files import read_knowledge_base_files
from core.knowledge_base import drop_uploads, import_knowledge_base, upload_source, uploaded_files
from core.settings import Settings
from core.web_import import fetch_page
from crowd_feedback.jobs import (
    canary_guard_watch,
    compact_search_job,
    export_job,
    reaggregate_job,
    retention_job,
    retention_params,
)
from training.jobs import register_handler, register_periodic, register_watch
from training.model_backup import backup_bundles
from training.model_retention import prune_job


def backup_params(settings: Settings) -> dict[str, Any] | None:
    """The daily backup's parameters; None (no schedule) without a backup folder."""
    if not settings.backup_dir:
        return None
    return {"dir": settings.backup_dir, "keep": settings.backup_keep, "models": settings.backup_models}


def backup_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[..., None]
) -> dict[str, Any]:
    """Back the database up into the backup folder (SQLite: a copy; PostgreSQL: a pg_dump archive), keeping
    the newest ``keep`` (core.backup); then, with ``models``, the bundles it serves and rolls back to
    (training.model_backup)."""
    folder = Path(params.get("dir") or settings.backup_dir)
    if not str(folder) or str(folder) == ".":
        raise ValueError("a backup needs a folder: set HELPLOOP_BACKUP_DIR or pass dir")
    keep = int(params.get("keep", settings.backup_keep))
    report(0.0, "backup")
    info, removed = scheduled_backup(
        settings.database_url,
        folder,
        keep=keep,
        progress=lambda done, total: report(0.95 * done / max(total, 1), "backup"),
    )
    result: dict[str, Any] = {
        "path": str(info.path),
        "bytes": info.bytes,
        "revision": info.revision,
        "removed": len(removed),
    }
    if params.get("models", settings.backup_models):
        report(0.96, "models")
        copies = backup_bundles(database, folder, backup_file=info.path)
        result["models"] = {
            "copied": copies.copied,
            "present": copies.present,
            "removed": copies.removed,
            "missing": copies.missing,
            "copied_bytes": copies.copied_bytes,
            "unreadable": copies.unreadable,
        }
    report(0.99, "done")
    return result


def kb_import_url_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[..., None]
) -> dict[str, Any]:
    """Fetch the page at ``url`` (core.web_import: public addresses only unless
    HELPLOOP_IMPORT_PRIVATE_ADDRESSES) and merge it into the knowledge base as an uploaded file is: checked
    whole first, all or nothing; a page that cannot be fetched or read fails the job with the reason."""
    url = str(params.get("url") or "")
    report(0.05, "fetching")
    name, content = fetch_page(
        url, limit_bytes=settings.max_upload_bytes, allow_private=settings.import_private_addresses
    )
    report(0.5, "reading")
    incoming = read_knowledge_base_files(
        [(name, content)],
        progress=lambda _file, done, of: report(
            0.5 + 0.3 * done / max(of, 1), f"reading page {done} of {of}"
        ),
        sources={name: url},
    )
    report(0.8, "importing")
    with database.session() as session:
        result = import_knowledge_base(
            session, incoming=incoming, source=f"imported by {params.get('by') or 'a job'} from {url}"
        )
    report(0.99, "done")
    return {"url": url, "file": name, **result.to_dict()}


def kb_import_upload_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[..., None]
) -> dict[str, Any]:
    """Import the files uploaded on the Knowledge page for this job (``params["job"]``; a Word document or a
    PDF among them: reading a long PDF takes a while), merged or with ``replace`` swapped in, as an upload
    inside the request is: checked whole first, all or nothing. The files are deleted when the job ends, in
    the import's own transaction when it succeeds."""
    job_id = int(params["job"])
    replace = bool(params.get("replace"))
    names = [str(n) for n in params.get("files", [])]
    try:
        with database.session() as session:
            files = uploaded_files(session, job_id=job_id)
        if len(files) != len(names):
            raise ValueError(
                "the uploaded files are gone (the job ran before, or was cancelled): upload again"
            )
        report(0.02, "reading")

        def pages(file: str, done: int, of: int) -> None:
            report(0.02 + 0.9 * done / max(of, 1), f"reading {Path(file).name}: page {done} of {of}")

        incoming = read_knowledge_base_files(files, progress=pages)
        report(0.93, "importing")
        with database.session() as session:
            result = import_knowledge_base(
                session,
                incoming=incoming,
                source=upload_source(by=params.get("by") or "a job", names=names, replace=replace),
                replace=replace,
            )
            drop_uploads(session, job_id=job_id)  # with the import: all or nothing
    except (
        BaseException
    ):  # failed or cancelled: the files are of no more use (a crash leaves them for a retry)
        with database.session() as session:
            drop_uploads(session, job_id=job_id)
        raise
    report(0.99, "done")
    return {"files": names, "replace": replace, **result.to_dict()}


def train_params(settings: Settings) -> dict[str, Any] | None:
    """A scheduled training run's parameters (as Retrain now; a new model put in shadow with
    HELPLOOP_TRAIN_AUTO_SHADOW); None without a schedule."""
    if settings.train_every_hours <= 0:
        return None
    return {"onnx": True, **({"auto_shadow": True} if settings.train_auto_shadow else {})}


def train_period(settings: Settings) -> timedelta:
    return timedelta(hours=settings.train_every_hours)


def purge_channels(session: Session, settings: Settings) -> str | None:
    """Hourly: messaging apps' delivered-update ids after a day, sent messages after a week, failed ones
    after a month (core.channels)."""
    removed = channels.purge_old(session)
    return ", ".join(f"{n} {what}" for what, n in removed.items() if n) or None


def telegram_connect_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[..., None]
) -> dict[str, Any]:
    """Register the Telegram webhook at this app's public address (the Activity page's button; the CLI's
    ``helploop channels connect telegram``): Telegram's answer can take seconds, so never in a request."""
    from serving.channels import connect_telegram

    if "telegram" not in settings.channels:
        raise ValueError(
            "telegram is not set up: set HELPLOOP_TELEGRAM_BOT_TOKEN and HELPLOOP_TELEGRAM_WEBHOOK_SECRET"
        )
    url = params.get("url") or (
        settings.public_url and channels.telegram_webhook_address(settings.public_url)
    )
    if not url:
        raise ValueError("set HELPLOOP_PUBLIC_URL: the https address Telegram can reach")
    report(0.0, "telegram")
    result = connect_telegram(settings, str(url))
    report(0.99, "done")
    return result


def install() -> None:
    register_handler("reaggregate", reaggregate_job)
    register_handler("retention", retention_job)
    register_handler("export", export_job)
    register_handler("search_compact", compact_search_job)
    register_periodic("retention", timedelta(days=1), retention_params)
    register_handler("backup", backup_job)
    register_handler("prune_models", prune_job)
    register_handler("kb_import_url", kb_import_url_job)
    register_handler("kb_import_upload", kb_import_upload_job)
    register_handler("telegram_connect", telegram_connect_job)
    register_periodic("backup", timedelta(days=1), backup_params)
    register_periodic("train", train_period, train_params)
    register_watch("canary_guard", canary_guard_watch)
    register_watch("ops_webhook", deliver_watch, every=5.0)
    register_watch("ops_events_purge", purge_old, every=3600.0)
    register_watch("channels_purge", purge_channels, every=3600.0)
