"""Wires every job kind into the runner: training's own, plus those of layers beside it."""

from __future__ import annotations

from crowd_feedback.jobs import reaggregate_job
from training.jobs import register_handler


def install() -> None:
    register_handler("reaggregate", reaggregate_job)
