"""Figures stored as JSON are finite: a NaN (an empty mean) becomes null instead of text PostgreSQL's JSONB
refuses, on SQLite and PostgreSQL (core.models.finite, used for model metrics and job results)."""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from core.models import Job, ModelVersion, finite
from core.registry import register_model_version
from training.jobs import claim_next, enqueue, finish


def test_not_finite_floats_become_none_through_dicts_and_lists() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x"), "e": None, "f": 0.5}
    assert finite(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "e": None, "f": 0.5}


def test_model_metrics_and_job_results_with_nan_are_stored_as_null(db_session: Session) -> None:
    register_model_version(
        db_session,
        version="v-nan",
        bundle_path="/nowhere",
        data_hash="h",
        metrics={"gate": {"rows": 0, "candidate": {"accuracy": math.nan, "ece": math.nan}}},
        kb_version_id=None,
    )
    db_session.flush()
    db_session.expire_all()
    stored = db_session.query(ModelVersion).filter_by(version="v-nan").one()
    assert stored.metrics["gate"]["candidate"] == {"accuracy": None, "ece": None}
    job = enqueue(db_session, kind="train", params={}, created_by="t")
    claimed = claim_next(db_session, worker_id="w")
    assert claimed is not None and claimed.id == job.id
    finish(db_session, job_id=job.id, worker_id="w", status="succeeded", result={"loss": math.nan})
    db_session.flush()
    db_session.expire_all()
    assert db_session.get(Job, job.id).result == {"loss": None}  # type: ignore[union-attr]
