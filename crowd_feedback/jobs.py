"""Crowd work that runs as a job (registered with the job runner by the composing app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.db import Database
from core.knowledge_base import load_knowledge_base
from core.settings import Settings
from crowd_feedback.review import ReviewPolicy, reaggregate


def reaggregate_job(
    database: Database, settings: Settings, params: dict[str, Any], report: Callable[[float, str], None]
) -> dict[str, Any]:
    """Bulk truth inference over every judgement (see ``crowd_feedback.review.reaggregate``)."""
    method = str(params.get("method", "dawid_skene"))
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
