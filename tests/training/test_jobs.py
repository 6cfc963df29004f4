"""Job rows and the worker, on SQLite and PostgreSQL: claims, leases, progress, cancel, failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from core.db import Database
from core.models import Job, OpsEvent, utcnow
from core.settings import load_settings
from training import jobs
from training.jobs import JobError, Worker, claim_next, enqueue, finish, heartbeat, request_cancel


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    from core import migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    settings = load_settings(
        {"environment": "testing", "instance_path": str(tmp_path), "database_url": url}, environ={}
    )
    db = Database(settings)
    migrate.upgrade(db.engine)
    with db.session() as session:
        session.execute(delete(Job))
        session.execute(delete(OpsEvent))
    yield db
    with db.session() as session:  # PostgreSQL's schema is shared by the session: leave no committed rows
        session.execute(delete(Job))
        session.execute(delete(OpsEvent))
    db.dispose()


@pytest.fixture
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: dict[str, Any] = {"steps": 0}

    def slow(database: Any, settings: Any, params: dict[str, Any], report: Any) -> dict[str, Any]:
        for i in range(params.get("steps", 5)):
            time.sleep(params.get("sleep", 0.0))
            report((i + 1) / params.get("steps", 5), f"step {i + 1}")
            calls["steps"] += 1
        return {"done": True}

    def broken(database: Any, settings: Any, params: dict[str, Any], report: Any) -> dict[str, Any]:
        raise RuntimeError("disk full")

    monkeypatch.setitem(jobs.HANDLERS, "slow", slow)
    monkeypatch.setitem(jobs.HANDLERS, "broken", broken)
    return calls


def test_lifecycle_progress_and_eta(database: Database, fake_kinds: dict[str, Any]) -> None:
    with database.session() as session:
        job_id = enqueue(session, kind="slow", params={"steps": 3}, created_by="tester").id
        with pytest.raises(JobError, match="unknown job kind"):
            enqueue(session, kind="nope", created_by="tester")
    worker = Worker(database, database.settings, worker_id="w1")
    assert worker.run_once() == job_id
    assert worker.run_once() is None
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "succeeded" and job.progress == 1.0 and job.result == {"done": True}
        assert job.worker_id == "w1" and job.attempts == 1 and job.finished_at is not None


def test_failure_is_recorded(database: Database, fake_kinds: dict[str, Any]) -> None:
    with database.session() as session:
        job_id = enqueue(session, kind="broken", created_by="tester").id
    Worker(database, database.settings).run_once()
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "failed" and job.error.startswith("RuntimeError: disk full")


def test_crashed_worker_lease_expires_and_another_worker_takes_over(database: Database) -> None:
    with database.session() as session:
        job_id = enqueue(session, kind="train", created_by="tester").id
    now = utcnow()
    with database.session() as session:
        assert claim_next(session, worker_id="dead", lease=timedelta(seconds=30), now=now).id == job_id
    with database.session() as session:
        assert (
            claim_next(session, worker_id="other", now=now + timedelta(seconds=5)) is None
        )  # lease still held
    with database.session() as session:
        job = claim_next(session, worker_id="alive", now=now + timedelta(seconds=31))
        assert job is not None and job.id == job_id and job.attempts == 2 and job.worker_id == "alive"
    with database.session() as session:
        # The first worker, back from the dead, learns it lost the job and its result is ignored.
        assert heartbeat(session, job_id=job_id, worker_id="dead", progress=0.5, step="x") is True
        finish(session, job_id=job_id, worker_id="dead", status="succeeded", result={"stale": True})
        assert session.get(Job, job_id).status == "running"


def test_gives_up_after_repeated_crashes(database: Database) -> None:
    with database.session() as session:
        job_id = enqueue(session, kind="train", created_by="tester").id
    now = utcnow()
    for attempt in range(jobs.MAX_ATTEMPTS):
        with database.session() as session:
            assert (
                claim_next(
                    session,
                    worker_id=f"w{attempt}",
                    lease=timedelta(seconds=1),
                    now=now + timedelta(seconds=2 * attempt),
                )
                is not None
            )
    with database.session() as session:
        assert claim_next(session, worker_id="last", now=now + timedelta(seconds=100)) is None
        job = session.get(Job, job_id)
        assert job.status == "failed" and "gave up" in job.error


def test_cancel_queued_and_running(database: Database, fake_kinds: dict[str, Any]) -> None:
    with database.session() as session:
        queued = enqueue(session, kind="slow", created_by="tester").id
        request_cancel(session, job_id=queued)
        assert session.get(Job, queued).status == "cancelled"
        with pytest.raises(JobError, match="already cancelled"):
            request_cancel(session, job_id=queued)
        running = enqueue(session, kind="slow", params={"steps": 200, "sleep": 0.02}, created_by="tester").id
    worker = Worker(database, database.settings, worker_id="w")
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        with database.session() as session:
            if session.get(Job, running).status == "running" and fake_kinds["steps"] > 30:
                request_cancel(session, job_id=running)
                break
        time.sleep(0.05)
    thread.join(20)
    with database.session() as session:
        job = session.get(Job, running)
        assert job.status == "cancelled" and 0 < job.progress < 1 and fake_kinds["steps"] < 200


@pytest.mark.postgres
def test_two_workers_never_claim_the_same_job(postgres_schema_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        {"environment": "testing", "instance_path": str(tmp_path), "database_url": postgres_schema_url},
        environ={},
    )
    db = Database(settings)
    with db.session() as session:
        session.execute(delete(Job))
        for _ in range(6):
            enqueue(session, kind="train", created_by="tester")
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def grab(name: str) -> None:
        barrier.wait()
        with db.session() as session:
            job = claim_next(session, worker_id=name)
            if job is not None:
                time.sleep(0.2)  # hold the row lock a moment, as a real claim does
                with lock:
                    claimed.append(job.id)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(claimed) == len(set(claimed)) == 6
    with db.session() as session:
        session.execute(delete(Job))
        session.execute(delete(OpsEvent))
    db.dispose()


def test_watches_run_each_in_its_own_transaction_and_a_broken_one_does_not_stop_the_others(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(session: Any, settings: Any) -> str | None:
        session.add(Job(kind="half-written", params={}))
        session.flush()
        raise RuntimeError("boom")

    def quiet(session: Any, settings: Any) -> str | None:
        return None

    def acting(session: Any, settings: Any) -> str | None:
        session.add(Job(kind="acted", params={}))
        return "did something"

    monkeypatch.setattr(jobs, "WATCHES", {"a_broken": broken, "b_quiet": quiet, "c_acting": acting})
    assert jobs.run_watches(database, database.settings) == ["c_acting: did something"]
    with database.session() as session:
        kinds = [j.kind for j in session.scalars(select(Job))]
    assert kinds == ["acted"]  # the broken watch's write was rolled back


def test_watches_keep_running_while_the_worker_runs_a_long_job(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canary guard and the ops webhook must not go blind for the hour a training run takes: watches run
    on the worker's watcher thread, beside the job, each on its own period."""
    looked_during_job = threading.Event()
    job_running = threading.Event()
    looks: dict[str, int] = {"fast": 0, "slow": 0, "during": 0}

    def fast(session: Any, settings: Any) -> str | None:
        looks["fast"] += 1
        if job_running.is_set():
            looks["during"] += 1
            if looks["during"] >= 3:
                looked_during_job.set()
        return None

    def slow(session: Any, settings: Any) -> str | None:
        looks["slow"] += 1
        return None

    def long_job(database: Any, settings: Any, params: dict[str, Any], report: Any) -> dict[str, Any]:
        job_running.set()
        return {"watch_ran_meanwhile": looked_during_job.wait(10)}

    monkeypatch.setitem(jobs.HANDLERS, "long", long_job)
    monkeypatch.setattr(jobs, "WATCHES", {"fast": fast, "slow": slow})
    monkeypatch.setattr(jobs, "WATCH_EVERY", {"fast": 0.05, "slow": 3600.0})
    monkeypatch.setattr(jobs, "WATCH_TICK_SECONDS", 0.02)
    with database.session() as session:
        job_id = enqueue(session, kind="long", created_by="tester").id
    worker = Worker(database, database.settings, poll_seconds=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with database.session() as session:
                job = session.get(Job, job_id)
                if job.status in jobs.FINISHED:
                    break
            time.sleep(0.05)
    finally:
        worker.stop()
    assert job.status == "succeeded" and job.result == {"watch_ran_meanwhile": True}
    assert looks["during"] >= 3 and looks["slow"] == 1  # each on its own period


def test_look_around_runs_each_watch_when_its_period_is_due(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(
        jobs, "WATCHES", {n: (lambda s, c, n=n: ran.append(n) or f"{n} looked") for n in ("often", "hourly")}
    )
    monkeypatch.setattr(jobs, "WATCH_EVERY", {"often": 5.0, "hourly": 3600.0})
    monkeypatch.setattr(jobs, "PERIODIC", {})
    worker = Worker(database, database.settings)
    assert worker.look_around(now=1000.0) == ["hourly: hourly looked", "often: often looked"]
    assert worker.look_around(now=1004.0) == []
    assert worker.look_around(now=1005.0) == ["often: often looked"]
    assert worker.look_around(now=4600.0) == ["hourly: hourly looked", "often: often looked"]
    assert ran == ["hourly", "often", "often", "hourly", "often"]


def test_the_canary_guard_is_a_registered_watch() -> None:
    from serving import job_kinds

    job_kinds.install()
    assert "canary_guard" in jobs.WATCHES and jobs.WATCH_EVERY["canary_guard"] == 60.0
    assert jobs.WATCH_EVERY["ops_webhook"] == 5.0 and jobs.WATCH_EVERY["ops_events_purge"] == 3600.0


def test_two_workers_checking_the_schedule_at_once_enqueue_one_job(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both look before either writes (a barrier inside enqueue, given up after a second): without the
    schedule lock, PostgreSQL queues two copies and SQLite refuses the second writer's stale snapshot."""
    monkeypatch.setattr(jobs, "PERIODIC", {"tick": (timedelta(hours=1), lambda _settings: {"n": 1})})
    monkeypatch.setitem(jobs.HANDLERS, "tick", lambda *_args: {})
    barrier = threading.Barrier(2, timeout=1.0)
    real_enqueue = jobs.enqueue

    def enqueue_after_both_looked(session: Any, **kwargs: Any) -> Job:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the other worker is waiting for the lock: go on alone
        return real_enqueue(session, **kwargs)

    monkeypatch.setattr(jobs, "enqueue", enqueue_after_both_looked)
    errors: list[BaseException] = []
    queued: list[int] = []

    def check() -> None:
        try:
            with database.session() as session:
                queued.extend(job.id for job in jobs.schedule_due(session, database.settings))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and len(queued) == 1
    with database.session() as session:
        assert session.scalars(select(Job.params).where(Job.kind == "tick")).all() == [{"n": 1}]
    # The watcher looks without the lock, and locks only when something is due.
    monkeypatch.setattr(jobs, "WATCHES", {})
    worker = Worker(database, database.settings)
    assert worker.look_around(now=1000.0) == []  # the job above is not an hour old
    with database.session() as session:
        session.execute(delete(Job).where(Job.kind == "tick"))
    (message,) = worker.look_around(now=1000.0 + jobs.SCHEDULE_CHECK_SECONDS)
    with database.session() as session:
        (job_id,) = session.scalars(select(Job.id).where(Job.kind == "tick")).all()
    assert message == f"scheduled tick job {job_id}"
