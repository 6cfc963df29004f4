"""Crowd work that runs as a job (registered with the job runner by the composing app)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.db import Database
from core.knowledge_base import load_knowledge_base
from core.models import utcnow
from core.settings import Settings
from core.turn_search import compact_index
from crowd_feedback.aggregation import DEFAULT_STRATEGY
from crowd_feedback.export import check_request, write_export
from crowd_feedback.outcomes import canary_guard
from crowd_feedback.retention import redact_old_turns
from crowd_feedback.review import ReviewPolicy, reaggregate


def reaggregate_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[[float, str], None]
) -> dict[str, Any]:
    """Bulk truth inference over every judgement (see ``crowd_feedback.review.reaggregate``)."""
    method = str(params.get("method", DEFAULT_STRATEGY))
    report(0.0, "loading")
    with database.session() as session:
        known = sorted(name for name in load_knowledge_base(session).intents if name != "oos")
        summary = reaggregate(
            session,
            method=method,
            known_intents=known,
            policy=ReviewPolicy.from_settings(settings),
            report=report,
        )
    report(0.99, "done")
    return {"method": method, **summary}


def retention_params(settings: Settings) -> dict[str, Any] | None:
    """The daily schedule's parameters; None (no schedule) while originals are kept."""
    return {"days": settings.turn_retention_days} if settings.turn_retention_days > 0 else None


def canary_guard_watch(session: Session, settings: Settings) -> str | None:
    """The worker's once-a-minute look at the canary (``crowd_feedback.outcomes.canary_guard``)."""
    row = canary_guard(session, min_questions=settings.canary_guard_min_questions)
    return row.reason if row is not None else None


def retention_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[[float, str], None]
) -> dict[str, Any]:
    """Redact the originals of turns older than ``days`` (``crowd_feedback.retention.redact_old_turns``)."""
    days = int(params.get("days", settings.turn_retention_days))
    if days <= 0:
        raise ValueError("retention needs days > 0 (set HELPLOOP_TURN_RETENTION_DAYS or pass days)")
    report(0.0, "counting turns")
    with database.session() as session:
        summary = redact_old_turns(session, before=utcnow() - timedelta(days=days), report=report)
    report(0.99, "done")
    return {"days": days, **summary}


def compact_search_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[[float, str], None]
) -> dict[str, Any]:
    """After erasures in the web app (``params["conversations"]``, one job for all that came while it was
    queued): merge SQLite's search index, so the erased texts' trigrams leave it
    (``core.turn_search.compact_index``), then empty the write-ahead log of the pages it rewrote."""
    report(0.0, "merging the search index")
    with database.session() as session:
        steps = compact_index(session, progress=lambda share: report(0.9 * share, "merging the search index"))
    report(0.9, "checkpoint")
    emptied = database.checkpoint()
    report(0.99, "done")
    return {"conversations": list(params.get("conversations", [])), "steps": steps, "checkpointed": emptied}


EXPORT_KEEP = timedelta(days=7)  # export files older than this are removed when the next export runs


def prune_exports(folder: Path, *, keep: timedelta = EXPORT_KEEP, now: float | None = None) -> int:
    """Remove export files older than ``keep``; returns how many."""
    import time

    cutoff = (now if now is not None else time.time()) - keep.total_seconds()
    removed = 0
    for file in folder.glob("*") if folder.is_dir() else []:
        if file.is_file() and file.stat().st_mtime < cutoff:
            file.unlink(missing_ok=True)
            removed += 1
    return removed


def export_dir(settings: Settings) -> Path:
    """Where export jobs write their files (the web app serves them to operators from here)."""
    return Path(settings.instance_path) / "exports"


def export_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[[float, str], None]
) -> dict[str, Any]:
    """Write an export file (``crowd_feedback.export``) under ``export_dir``; the result names the file."""
    what, fmt = str(params.get("what", "")), str(params.get("format", "csv"))
    check_request(what, fmt)
    name = f"{what}-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}.{fmt}"
    report(0.0, "counting rows")
    with database.session() as session:
        summary = write_export(session, what=what, fmt=fmt, out=export_dir(settings) / name, report=report)
    pruned = prune_exports(export_dir(settings))
    report(0.99, "done")
    return {**summary, "file": name, "pruned": pruned}
