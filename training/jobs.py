"""Job rows and the worker that runs them.

A job is enqueued (status ``queued``); a worker claims it under a lease (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), heartbeats progress into the row, stops when cancel is requested, and records the result or the
error. A job whose worker died (its lease ran out while ``running``) is claimed again by the next worker.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from core.db import Database
from core.events import emit
from core.knowledge_base import store_uploads
from core.models import Job, as_utc, finite, utcnow
from core.settings import Settings

log = logging.getLogger("helploop.training.jobs")
FINISHED = ("succeeded", "failed", "cancelled")
DEFAULT_LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 3


class JobCancelled(Exception):
    """Raised inside a handler when an operator asked to cancel."""


class JobError(ValueError):
    pass


def job_view(job: Job) -> dict[str, Any]:
    """What the job pages (and the admin API) show of a job row."""
    return {
        "id": job.id,
        "kind": job.kind,
        "params": job.params or {},
        "status": job.status,
        "progress": job.progress,
        "step": job.step,
        "eta": job.eta_seconds,
        "error": job.error,
        "result": job.result or {},
        "created_by": job.created_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        # wall time of the last attempt: from its start to the end, or to now while it runs
        "seconds": (
            (as_utc(job.finished_at or utcnow()) - as_utc(job.started_at)).total_seconds()
            if job.started_at
            else None
        ),
    }


def enqueue(session: Session, *, kind: str, params: dict[str, Any] | None = None, created_by: str) -> Job:
    if kind not in HANDLERS:
        raise JobError(f"unknown job kind {kind!r}; known: {sorted(HANDLERS)}")
    job = Job(kind=kind, params=params or {}, created_by=created_by, status="queued")
    session.add(job)
    session.flush()
    return job


def unfinished(session: Session, *, kind: str) -> int | None:
    """The id of a job of ``kind`` still queued or running (None: none is), for the pages that start one
    at a time."""
    return session.scalar(
        select(Job.id).where(Job.kind == kind, Job.status.in_(("queued", "running"))).limit(1)
    )


def enqueue_file_import(
    session: Session, *, files: Sequence[tuple[str, bytes]], replace: bool, created_by: str
) -> Job:
    """Knowledge-base files imported by a job (``kb_import_upload``: a Word document or a PDF takes a while to
    read): the files are kept in the database for it (core.knowledge_base.store_uploads), where every worker
    reaches them, and deleted when it ends."""
    job = enqueue(
        session,
        kind="kb_import_upload",
        params={"files": [name for name, _ in files], "replace": replace, "by": created_by},
        created_by=created_by,
    )
    job.params = {**job.params, "job": job.id}  # the handler's way to its files
    store_uploads(session, job_id=job.id, files=files)
    return job


def request_cancel(session: Session, *, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobError(f"job {job_id} does not exist")
    if job.status in FINISHED:
        raise JobError(f"job {job_id} already {job.status}")
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    job.cancel_requested = True
    session.flush()
    return job


def claim_next(
    session: Session, *, worker_id: str, lease: timedelta = DEFAULT_LEASE, now: datetime | None = None
) -> Job | None:
    """Take the oldest queued job, or a running one whose worker's lease expired (it crashed)."""
    now = now or utcnow()
    query = (
        select(Job)
        .where(or_(Job.status == "queued", (Job.status == "running") & (Job.lease_expires_at < now)))
        .order_by(Job.created_at, Job.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    job = session.scalars(query).first()
    if job is None:
        return None
    if job.attempts >= MAX_ATTEMPTS:
        job.status, job.finished_at = "failed", now
        job.error = (job.error or "") + f"\ngave up after {job.attempts} attempts (worker lost each time)"
        announce_finish(session, job)
        session.flush()
        return None
    job.status = "running"
    job.worker_id = worker_id
    job.attempts += 1
    job.started_at = job.started_at or now
    job.lease_expires_at = now + lease
    session.flush()
    return job


def heartbeat(
    session: Session,
    *,
    job_id: int,
    worker_id: str,
    progress: float,
    step: str,
    loss: float | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> bool:
    """Record progress and extend the lease; returns True when cancel was requested."""
    job = session.get(Job, job_id)
    if job is None or job.worker_id != worker_id:
        return True  # the job was taken over: stop
    now = utcnow()
    job.progress = max(0.0, min(1.0, progress))
    job.step = step[:200]
    if loss is not None:
        job.loss = loss
        job.history = [*job.history, {"progress": job.progress, "loss": loss, "at": now.isoformat()}]
    if job.started_at is not None and 0.02 < job.progress < 1.0:
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=now.tzinfo)
        elapsed = (now - started).total_seconds()
        job.eta_seconds = elapsed * (1.0 - job.progress) / job.progress
    job.lease_expires_at = now + lease
    session.flush()
    return bool(job.cancel_requested)


def finish(
    session: Session,
    *,
    job_id: int,
    worker_id: str,
    status: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    job = session.get(Job, job_id)
    if job is None or job.worker_id != worker_id:
        return
    job.status = status
    job.result = finite(result)
    job.error = error
    job.finished_at = utcnow()
    job.lease_expires_at = None
    if status == "succeeded":
        job.progress, job.eta_seconds = 1.0, 0.0
    announce_finish(session, job)
    session.flush()


def announce_finish(session: Session, job: Job) -> None:
    """The ``job.finished`` ops event: every training run and every operator's job; a scheduled job only
    when it did not succeed (a daily success is not news), or when it is a training run that built a model (a
    candidate waits for the operators)."""
    result = job.result or {}
    if job.status == "succeeded" and job.created_by == "schedule":
        if not (job.kind == "train" and result.get("version")):
            return
    error = (job.error or "").strip() if job.status == "failed" else ""
    first_line = error.splitlines()[0][:300] if error else ""
    gate = result.get("gate") or {}
    if job.kind == "train":
        message = f"Training run {job.id} {job.status}"
        if job.status == "succeeded" and result.get("unchanged"):
            message += f": nothing new since model {result.get('same_as')}, no model built"
        elif job.status == "succeeded":
            message += f": model {result.get('version')}"
            if gate.get("decision"):
                message += f", gate: {str(gate['decision']).replace('_', ' ')}"
                difference = (gate.get("difference") or {}).get("accuracy")
                if isinstance(difference, int | float):
                    message += f" ({difference * 100:+.1f} points against production)"
            if (result.get("auto_shadow") or {}).get("shadowed"):
                message += ", put in shadow"
        path = f"/operator/runs/{job.id}"
    else:
        message, path = f"Job {job.id} ({job.kind}) {job.status}", "/operator/exports"
    if first_line:
        message += f": {first_line}"
    emit(
        session,
        "job.finished",
        message + f" (started by {job.created_by}).",
        path=path,
        data={
            "job_id": job.id,
            "kind": job.kind,
            "status": job.status,
            "created_by": job.created_by,
            "error": first_line or None,
            "version": result.get("version"),
            "unchanged_from": result.get("same_as"),
            "gate_decision": gate.get("decision"),
        },
    )


# -------------------------------------------------------------------------------------------- handlers

ProgressReporter = Callable[..., None]  # (progress, step, loss=None)
Handler = Callable[[Database, Settings, dict[str, Any], ProgressReporter], dict[str, Any]]


def _train(
    database: Database, settings: Settings, params: dict[str, Any], report: ProgressReporter
) -> dict[str, Any]:
    """Fit the engine on the knowledge base plus verified crowd pairs; register the new model. Database
    sessions stay short: snapshot, then minutes of fitting without one, then register."""
    from training.build import (
        fit_bundle,
        inputs_hash,
        model_with_same_inputs,
        register_bundle,
        serving_role,
        traffic_limit,
        training_snapshot,
    )

    spans = {
        "encode": (0.0, 0.3),
        "out-of-fold": (0.3, 0.8),
        "self-training": (0.3, 0.8),
        "refit": (0.8, 0.92),
        "calibrate": (0.92, 0.97),
        "done": (0.97, 0.98),
    }

    fine_tune = params.get("fine_tune")
    if fine_tune is not None:  # the encoder's training dominates: give it most of the bar
        spans = {
            "fine-tune": (0.02, 0.7),
            "encode": (0.7, 0.8),
            "self-training": (0.8, 0.86),
            "refit": (0.86, 0.9),
            "calibrate": (0.9, 0.95),
            "done": (0.95, 0.98),
        }

    def on_progress(step: str, fraction: float) -> None:
        low, high = spans.get(step, (0.0, 1.0))
        report(low + (high - low) * fraction, step)

    def on_loss(fraction: float, loss: float) -> None:
        low, high = spans.get("fine-tune", (0.0, 1.0))
        report(low + (high - low) * fraction, "fine-tune", loss=loss)

    if params.get("self_training") is not None:  # this run's choice over the setting
        settings = replace(settings, self_training=bool(params["self_training"]))
    report(0.0, "snapshot")
    onnx = bool(params.get("onnx", True))
    with database.session() as session:
        snapshot = training_snapshot(
            session, traffic_limit=traffic_limit(settings), none_fits=settings.none_fits_out_of_scope
        )
        inputs = inputs_hash(snapshot, settings, fine_tune=fine_tune, onnx=onnx)
        same = None if params.get("force") else model_with_same_inputs(session, inputs)
        if same is not None:
            # Nothing new to learn: fitting would rebuild that model (minutes, or much more with
            # fine-tuning) and add a duplicate candidate to roll out. "Retrain anyway" sets force.
            report(1.0, "unchanged")
            return {
                "unchanged": True,
                "same_as": same.version,
                "same_as_role": serving_role(session, same.version),
                "inputs_hash": inputs,
                "training_rows": len(snapshot.texts),
                "crowd_pairs": snapshot.crowd_pairs,
                "out_of_scope_pairs": snapshot.out_of_scope_pairs,
                "evaluation_rows": len(snapshot.evaluation_texts),
                "traffic_questions": len(snapshot.traffic_texts),
            }
    engine, bundle, metrics = fit_bundle(
        snapshot,
        settings,
        onnx=onnx,
        on_progress=on_progress,
        fine_tune=fine_tune,
        on_loss=on_loss,
        inputs=inputs,
    )
    with database.session() as session:
        result = register_bundle(
            session, engine=engine, bundle=bundle, metrics=metrics, kb_version_id=snapshot.kb_version_id
        )
    report(0.99, "registered")
    shadow = _auto_shadow(database, result.version) if params.get("auto_shadow") else None
    pruned: list[str] = []
    prune_failed: dict[str, str] = {}
    if settings.keep_models > 0:
        from training.model_retention import prune_models

        try:
            pruning = prune_models(database, settings, keep=settings.keep_models, actor="training run")
            # A bundle whose folder could not be deleted is named apart; the next prune tries it again.
            pruned = pruning.deleted_versions
            prune_failed = dict(pruning.failed)
        except Exception:  # the model is built and registered: pruning is housekeeping, never the run's fate
            log.exception("pruning old model bundles after training failed")
    return {
        "pruned_models": pruned,
        "prune_failed": prune_failed,
        "version": result.version,
        "bundle_path": str(result.bundle_path),
        "metrics": result.metrics,
        "training_rows": len(snapshot.texts),
        "crowd_pairs": snapshot.crowd_pairs,
        "out_of_scope_pairs": snapshot.out_of_scope_pairs,
        "evaluation_rows": len(snapshot.evaluation_texts),
        "traffic_questions": len(snapshot.traffic_texts),
        "self_training": engine.manifest.get("training", {}).get("self_training"),
        "gate": result.metrics.get("gate"),
        **({"auto_shadow": shadow} if shadow is not None else {}),
    }


def _auto_shadow(database: Database, version: str) -> dict[str, Any]:
    """Put a scheduled run's new model in shadow, unless an operator's shadow or canary is running (never
    replaced) or the gate found the model worse. Audited like any rollout action, by "schedule"."""
    from core.registry import serving_plan
    from training.rollout import RolloutError, apply_action, gate_decision

    with database.session() as session:
        plan = serving_plan(session) or {}  # one read: what serves, and in which arm
        if (plan.get("production") or (None,))[0] == version:
            return {"shadowed": False, "why": "it is the production model (the first one built)"}
        for arm in ("shadow", "canary"):
            if plan.get(arm):
                return {"shadowed": False, "why": f"{plan[arm][0]} is in {arm}"}
        decision = str(gate_decision(session, version).get("decision") or "")
        if decision == "worse":
            return {"shadowed": False, "why": "the gate found it worse than production"}
        try:
            apply_action(
                session,
                action="shadow",
                version=version,
                actor="schedule",
                reason=f"scheduled retrain: new model put in shadow (gate: {decision.replace('_', ' ')})",
            )
        except RolloutError as exc:
            return {"shadowed": False, "why": str(exc)}
    return {"shadowed": True, "why": ""}


HANDLERS: dict[str, Handler] = {"train": _train}


def register_handler(kind: str, handler: Handler) -> None:
    """Add a job kind. Layers beside this one (crowd_feedback) are wired in by the app that composes them."""
    HANDLERS[kind] = handler


# kind -> (how often, fixed or from the settings; params from the settings or None when the schedule is off)
Period = timedelta | Callable[[Settings], timedelta]
PERIODIC: dict[str, tuple[Period, Callable[[Settings], dict[str, Any] | None]]] = {}
SCHEDULE_CHECK_SECONDS = 60.0


def register_periodic(kind: str, every: Period, params: Callable[[Settings], dict[str, Any] | None]) -> None:
    """Run a job kind on a schedule: a worker (checking once a minute) enqueues it when no job of that kind
    was created within ``every``, whatever became of it, so restarts and failed runs never pile up copies.
    Workers checking in the same instant take turns (``schedule_due``), so one of them enqueues it."""
    PERIODIC[kind] = (every, params)


Check = Callable[[Session, Settings], str | None]
# name -> a check every worker runs on its watcher thread (beside the job it may be running: a training run
# of an hour must not blind the canary guard), in its own transaction, every ``WATCH_EVERY[name]`` seconds;
# it returns what it did (logged), or None. For cheap looks that act rarely (no job row per look): the
# canary guard, the ops webhook's deliveries.
WATCHES: dict[str, Check] = {}
WATCH_EVERY: dict[str, float] = {}
WATCH_TICK_SECONDS = 5.0


def register_watch(name: str, check: Check, *, every: float = SCHEDULE_CHECK_SECONDS) -> None:
    WATCHES[name] = check
    WATCH_EVERY[name] = every


def run_watches(database: Database, settings: Settings, *, only: Iterable[str] | None = None) -> list[str]:
    """Each watch (or those named in ``only``) in its own transaction: one that fails is logged and the
    others still run."""
    done = []
    wanted = set(WATCHES) if only is None else set(only)
    for name, check in sorted(WATCHES.items()):
        if name not in wanted:
            continue
        try:
            with database.session() as session:
                message = check(session, settings)
        except Exception:  # noqa: BLE001 - a broken watch must not stop the worker
            log.exception("watch %s failed", name)
            continue
        if message:
            log.warning("%s: %s", name, message)
            done.append(f"{name}: {message}")
    return done


# pg_advisory_xact_lock's key for the schedule check (any fixed 64-bit number; "HelpLoop" in ASCII).
SCHEDULE_LOCK_KEY = 0x48656C704C6F6F70


def _due(session: Session, settings: Settings, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """(kind, params) of each scheduled kind whose period has passed since its last job."""
    due = []
    for kind, (every, make_params) in sorted(PERIODIC.items()):
        params = make_params(settings)
        if params is None or kind not in HANDLERS:
            continue
        period = every(settings) if callable(every) else every
        recent = session.scalar(
            select(Job.id).where(Job.kind == kind, Job.created_at > now - period).limit(1)
        )
        if recent is None:
            due.append((kind, params))
    return due


def anything_due(session: Session, settings: Settings, *, now: datetime | None = None) -> bool:
    """The watcher's look once a minute, without a lock: ``schedule_due`` (which locks) only when it is
    true."""
    return bool(_due(session, settings, now or utcnow()))


def _take_schedule_lock(session: Session) -> None:
    """Hold the schedule check's lock to the end of the transaction, so that two workers checking at once
    take turns and the second sees the first one's job instead of enqueueing its own. PostgreSQL: a
    transaction-level advisory lock. SQLite: the database's write lock, taken by a write that changes
    nothing (it must be the transaction's first statement: a write after a read of an older snapshot is
    refused, not queued)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULE_LOCK_KEY})
    elif dialect == "sqlite":
        session.execute(text("UPDATE jobs SET id = id WHERE 1 = 0"))


def schedule_due(session: Session, settings: Settings, *, now: datetime | None = None) -> list[Job]:
    """Enqueue each scheduled kind that is due; under the schedule lock (``_take_schedule_lock``), so call
    it at the start of a transaction and commit soon after."""
    _take_schedule_lock(session)
    now = now or utcnow()
    queued = []
    for kind, params in _due(session, settings, now):
        job = enqueue(session, kind=kind, params=params, created_by="schedule")
        job.created_at = now
        queued.append(job)
    session.flush()
    return queued


class Worker:
    """Claims and runs jobs. ``run_once`` for tests and cron-like use; ``start`` for a background thread."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        worker_id: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        poll_seconds: float = 2.0,
    ) -> None:
        self.database = database
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.lease = lease
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._last_look: dict[str, float] = {}

    def run_once(self) -> int | None:
        """Run one job if there is one; returns its id."""
        with self.database.session() as session:
            job = claim_next(session, worker_id=self.worker_id, lease=self.lease)
            if job is None:
                return None
            job_id, kind, params = job.id, job.kind, dict(job.params)
        self._execute(job_id, kind, params)
        return job_id

    def _report(self, job_id: int) -> ProgressReporter:
        last = [0.0]

        def report(progress: float, step: str, loss: float | None = None) -> None:
            now = time.monotonic()
            if loss is None and now - last[0] < 0.5 and progress < 0.99:
                return  # at most two heartbeats a second (every loss value is kept)
            last[0] = now
            with self.database.session() as session:
                cancelled = heartbeat(
                    session,
                    job_id=job_id,
                    worker_id=self.worker_id,
                    progress=progress,
                    step=step,
                    loss=loss,
                    lease=self.lease,
                )
            if cancelled:
                raise JobCancelled()

        return report

    def _execute(self, job_id: int, kind: str, params: dict[str, Any]) -> None:
        handler = HANDLERS.get(kind)
        try:
            if handler is None:
                raise JobError(f"no handler for job kind {kind!r}")
            result = handler(self.database, self.settings, params, self._report(job_id))
            status, error = "succeeded", None
        except JobCancelled:
            result, status, error = None, "cancelled", "cancelled by an operator"
        except Exception as exc:  # noqa: BLE001 - a failed job records why and the worker goes on
            log.exception("job %s (%s) failed", job_id, kind)
            result, status = None, "failed"
            error = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=5)
        with self.database.session() as session:
            finish(
                session, job_id=job_id, worker_id=self.worker_id, status=status, result=result, error=error
            )

    def start(self) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    ran = self.run_once()
                except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable
                    log.exception("worker loop error")
                    ran = None
                if ran is None:
                    self._stop.wait(self.poll_seconds)

        self._thread = threading.Thread(target=loop, name="helploop-worker", daemon=True)
        self._thread.start()
        self.start_watcher()

    def start_watcher(self) -> None:
        """The watcher thread alone (``helploop worker`` runs jobs on its main thread): schedules and
        watches every ``WATCH_TICK_SECONDS``."""
        if self._watcher is not None:
            return

        def watch() -> None:
            while not self._stop.is_set():
                try:
                    self.look_around()  # logs what it did
                except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable
                    log.exception("worker watcher error")
                self._stop.wait(WATCH_TICK_SECONDS)

        self._watcher = threading.Thread(target=watch, name="helploop-watcher", daemon=True)
        self._watcher.start()

    def look_around(self, now: float | None = None) -> list[str]:
        """One tick of the watcher thread: enqueue scheduled jobs and run the watches whose time has come
        (each on its own period). Runs beside jobs, never behind them."""
        now = time.monotonic() if now is None else now
        done: list[str] = []
        if PERIODIC and now - self._last_look.get("", -math.inf) >= SCHEDULE_CHECK_SECONDS:
            self._last_look[""] = now
            with self.database.session() as session:
                something_due = anything_due(session, self.settings)
            # The lock only when something is due (about once a day), in a transaction of its own.
            if something_due:
                with self.database.session() as session:
                    queued = schedule_due(session, self.settings)
                    scheduled = [(job.kind, job.id) for job in queued]
                for kind, job_id in scheduled:
                    log.info("scheduled %s job %s", kind, job_id)
                    done.append(f"scheduled {kind} job {job_id}")
        due = [
            name
            for name in WATCHES
            if now - self._last_look.get(name, -math.inf) >= WATCH_EVERY.get(name, SCHEDULE_CHECK_SECONDS)
        ]
        for name in due:
            self._last_look[name] = now
        if due:
            done += run_watches(self.database, self.settings, only=due)
        return done

    def stop(self) -> None:
        self._stop.set()
