"""Wires every job kind into the runner: training's own, plus those of layers beside it."""

from __future__ import annotations

from datetime import timedelta

from core.events import deliver_watch, purge_old
from crowd_feedback.jobs import (
    canary_guard_watch,
    export_job,
    reaggregate_job,
    retention_job,
    retention_params,
)
from training.jobs import register_handler, register_periodic, register_watch


def install() -> None:
    register_handler("reaggregate", reaggregate_job)
    register_handler("retention", retention_job)
    register_handler("export", export_job)
    register_periodic("retention", timedelta(days=1), retention_params)
    register_watch("canary_guard", canary_guard_watch)
    register_watch("ops_webhook", deliver_watch, every=5.0)
    register_watch("ops_events_purge", purge_old, every=3600.0)
