"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.backup import stored_backups
from serving.app import limiter, state

health = Blueprint("health", __name__)
log = logging.getLogger("helploop.serving.health")


@health.get("/healthz")
@limiter.exempt
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
@limiter.exempt
def readyz() -> tuple[Response, int]:
    helploop = state()
    checks: dict[str, str] = {}
    try:
        with helploop.database.engine.connect() as connection:
            connection.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {type(exc).__name__}"
    serving = helploop.models.state
    checks["model"] = serving.production.version if serving.production else "not loaded"
    ready = checks["database"] == "ok" and serving.production is not None
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if helploop.models.last_error:
        body["last_error"] = helploop.models.last_error
    return jsonify(body), 200 if ready else 503


@health.get("/metrics")
@limiter.exempt
def metrics() -> Response:
    helploop = state()
    serving = helploop.models.state
    helploop.metrics.set_models(
        {
            "production": serving.production.version if serving.production else None,
            "canary": serving.canary.version if serving.canary else None,
            "shadow": serving.shadow.version if serving.shadow else None,
        }
    )
    if helploop.settings.backup_dir:
        newest = stored_backups(Path(helploop.settings.backup_dir))
        helploop.metrics.set_backup(helploop.settings.backup_dir, newest[0].taken_at if newest else None)
    try:
        with helploop.database.session() as session:
            helploop.metrics.set_workload(**_workload(session))
    except SQLAlchemyError as exc:  # the model gauges and counters still answer
        log.warning("metrics: could not read the workload: %s", exc)
    return Response(helploop.metrics.render(), mimetype="text/plain; version=0.0.4")


def _workload(session: Session) -> dict[str, Any]:
    from core.events import delivery_counts
    from core.models import Job, ReviewItem, utcnow
    from core.registry import waiting_conversations
    from crowd_feedback.suggestions import count_suggestions

    review_items = dict(
        session.execute(
            select(ReviewItem.status, func.count())
            .where(ReviewItem.is_gold.is_(False))
            .group_by(ReviewItem.status)
        ).all()
    )
    _, waiting = waiting_conversations(session, limit=0)
    jobs = {
        (kind, status): int(count)
        for kind, status, count in session.execute(
            select(Job.kind, Job.status, func.count())
            .where(Job.status.in_(("queued", "running")))
            .group_by(Job.kind, Job.status)
        )
    }
    return {
        "review_items": {str(k): int(v) for k, v in review_items.items()},
        "handoffs_waiting": int(waiting),
        "suggestions_open": count_suggestions(session),
        "jobs": jobs,
        "ops_events": delivery_counts(session, since=utcnow() - timedelta(days=1)),
    }


@health.before_app_request
def start_timer() -> None:
    g.request_started = time.perf_counter()


@health.after_app_request
def observe_latency(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None and request.url_rule is not None:
        state().metrics.request_latency.labels(endpoint=request.url_rule.rule).observe(
            time.perf_counter() - started
        )
    return response
