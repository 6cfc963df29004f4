"""Ops events: the outbox written with each change, and its delivery to the ops webhook (both databases)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.events import (
    CLAIM_SECONDS_PER_EVENT,
    LOOK_BUDGET_SECONDS,
    MAX_ATTEMPTS,
    EventError,
    deliver_due,
    delivery_counts,
    emit,
    payload,
    purge_old,
    recent_events,
    resend,
)
from core.models import Job, OpsEvent, as_utc, utcnow
from core.settings import SettingsError, load_settings
from tests.conftest import at_once


def ops_settings(tmp_path: Path, **values: Any) -> Any:
    base = {
        "environment": "testing",
        "instance_path": str(tmp_path / "instance"),
        "ops_webhook_url": "https://hooks.example.com/ops",
        "ops_webhook_secret": "s3cret",
        "public_url": "https://help.example.com/",
    }
    return load_settings(base | values, environ={})


class Receiver:
    """A fake receiving end: records each POST, answers with the scripted statuses (an exception for None)."""

    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[str, dict[str, Any], dict[str, str], bytes]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.calls.append((url, json.loads(body), headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        if status is None:
            raise ConnectionRefusedError("connection refused")
        return status


def test_an_event_exists_only_if_its_change_commits(db_session: Session) -> None:
    savepoint = db_session.begin_nested()
    emit(db_session, "test", "rolled back")
    savepoint.rollback()
    kept = emit(db_session, "test", "kept", path="/operator/activity", data={"n": 1})
    assert [e.text for e in recent_events(db_session)] == ["kept"]
    assert (
        kept.status == "pending"
        and kept.attempts == 0
        and kept.data == {"n": 1, "path": "/operator/activity"}
    )
    with pytest.raises(EventError, match="unknown event kind 'nonsense'"):
        emit(db_session, "nonsense", "x")


def test_delivery_posts_a_signed_slack_compatible_payload(db_session: Session, tmp_path: Path) -> None:
    settings = ops_settings(tmp_path)
    event = emit(db_session, "test", "Hello ops.", path="/operator/activity", data={"actor": "omar"})
    receiver = Receiver(200)
    now = utcnow()
    assert deliver_due(db_session, settings, post=receiver, now=now) == {"delivered": 1}
    url, body, headers, raw = receiver.calls[0]
    assert url == "https://hooks.example.com/ops"
    assert body == {
        "event": "test",
        "id": event.id,
        "created_at": payload(event, settings)["created_at"],
        "text": "Hello ops. https://help.example.com/operator/activity",
        "url": "https://help.example.com/operator/activity",
        "data": {"actor": "omar"},
    }
    expected = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert headers["X-HelpLoop-Signature"] == expected and headers["X-HelpLoop-Event"] == "test"
    assert event.status == "delivered" and event.attempts == 1 and event.delivered_at == now
    assert deliver_due(db_session, settings, post=receiver) == {}  # sent once
    assert len(receiver.calls) == 1


def test_a_failing_receiver_is_retried_with_backoff_then_the_event_fails(
    db_session: Session, tmp_path: Path
) -> None:
    settings = ops_settings(tmp_path, ops_webhook_secret="")
    event = emit(db_session, "test", "x")
    receiver = Receiver(500, None, 503, 500, 502)
    start = utcnow()
    assert deliver_due(db_session, settings, post=receiver, now=start) == {"retry": 1}
    assert event.last_error == "HTTP 500" and event.next_attempt_at == start + timedelta(minutes=1)
    assert "X-HelpLoop-Signature" not in receiver.calls[0][2]  # no secret, no signature
    # Not due yet: nothing is sent.
    assert deliver_due(db_session, settings, post=receiver, now=start + timedelta(seconds=59)) == {}
    moment = start
    waits = []
    for _ in range(MAX_ATTEMPTS - 1):
        moment = event.next_attempt_at
        waits.append(round((event.next_attempt_at - start).total_seconds() / 60))
        deliver_due(db_session, settings, post=receiver, now=moment)
    assert waits == [1, 3, 7, 15]  # 1, 2, 4 minutes apart, then 8
    assert event.status == "failed" and event.attempts == MAX_ATTEMPTS == len(receiver.calls)
    assert event.last_error == "HTTP 502" and event.next_attempt_at is None
    assert deliver_due(db_session, settings, post=receiver, now=moment + timedelta(hours=1)) == {}
    # An operator fixes the receiving end and sends it again: attempts count afresh.
    resend(db_session, event_id=event.id)
    assert (event.status, event.attempts, event.last_error) == ("pending", 0, None)
    with pytest.raises(EventError, match="already waiting"):
        resend(db_session, event_id=event.id)
    with pytest.raises(EventError, match="does not exist"):
        resend(db_session, event_id=event.id + 1000)
    assert deliver_due(db_session, settings, post=receiver, now=moment) == {"delivered": 1}
    assert receiver.calls[1][1]["id"] == receiver.calls[-1][1]["id"] == event.id  # receivers can de-duplicate


def test_a_worker_dying_mid_delivery_leaves_its_claimed_events_to_be_sent_again(
    db_session: Session, tmp_path: Path
) -> None:
    """The claim is committed before any POST: while it lasts no worker sends the event again; once it runs
    out (the worker died before recording the outcome), the next look sends it (at least once)."""
    settings = ops_settings(tmp_path)
    event = emit(db_session, "test", "x")

    def dies(url: str, body: bytes, headers: dict[str, str]) -> int:
        raise SystemExit("killed")

    start = utcnow()
    with pytest.raises(SystemExit):
        deliver_due(db_session, settings, post=dies, now=start, limit=3)
    db_session.expire_all()
    assert (event.status, event.attempts) == ("pending", 1)
    assert as_utc(event.next_attempt_at) == start + timedelta(seconds=CLAIM_SECONDS_PER_EVENT * 3)
    receiver = Receiver(200)
    assert deliver_due(db_session, settings, post=receiver, now=start + timedelta(seconds=29)) == {}
    later = start + timedelta(seconds=30)
    assert deliver_due(db_session, settings, post=receiver, now=later) == {"delivered": 1}
    assert (event.status, event.attempts, len(receiver.calls)) == ("delivered", 2, 1)


def test_a_failing_receiver_costs_one_attempt_per_look_not_one_per_event(
    db_session: Session, tmp_path: Path
) -> None:
    settings = ops_settings(tmp_path)
    events = [emit(db_session, "test", f"event {i}") for i in range(3)]
    receiver = Receiver(None)  # down: connection refused
    now = utcnow()
    assert deliver_due(db_session, settings, post=receiver, now=now) == {"retry": 1, "deferred": 2}
    assert len(receiver.calls) == 1 and receiver.calls[0][1]["id"] == events[0].id  # oldest first
    assert [(e.attempts, e.last_error is not None) for e in events] == [(1, True), (0, False), (0, False)]
    assert {as_utc(e.next_attempt_at) for e in events} == {now + timedelta(minutes=1)}
    # Back up a minute later: all three go, the first on its second attempt.
    assert deliver_due(db_session, settings, post=receiver, now=now + timedelta(minutes=1)) == {
        "delivered": 3
    }
    assert [e.attempts for e in events] == [2, 1, 1] and len(receiver.calls) == 4


def test_a_slow_receiver_gets_the_rest_on_the_next_look(db_session: Session, tmp_path: Path) -> None:
    """Each POST takes 4 s (just under the timeout): a look stops after LOOK_BUDGET_SECONDS and leaves the
    rest due at once, with no attempt counted, so the watcher thread's other watches are not held up."""
    settings = ops_settings(tmp_path)
    events = [emit(db_session, "test", f"event {i}") for i in range(5)]
    clock = [0.0]

    def slow(url: str, body: bytes, headers: dict[str, str]) -> int:
        clock[0] += 4.0
        return 200

    now = utcnow()
    outcomes = deliver_due(db_session, settings, post=slow, now=now, clock=lambda: clock[0])
    assert outcomes == {"delivered": 3, "deferred": 2} and LOOK_BUDGET_SECONDS == 10.0  # 4, 8, 12 s
    assert [e.status for e in events] == ["delivered"] * 3 + ["pending"] * 2
    assert [(e.attempts, as_utc(e.next_attempt_at)) for e in events[3:]] == [(0, now), (0, now)]
    assert deliver_due(db_session, settings, post=slow, now=now, clock=lambda: clock[0]) == {"delivered": 2}


def test_events_nobody_subscribed_to_are_not_sent_now_or_later(db_session: Session, tmp_path: Path) -> None:
    receiver = Receiver()
    before = emit(db_session, "test", "before the webhook was set")
    assert deliver_due(db_session, ops_settings(tmp_path, ops_webhook_url=""), post=receiver) == {"unsent": 1}
    filtered = ops_settings(tmp_path, ops_webhook_events="deployment.changed, job.finished")
    assert filtered.ops_event_kinds == ("deployment.changed", "job.finished")
    job_event = emit(db_session, "job.finished", "a job")
    test_event = emit(db_session, "test", "not subscribed")
    assert deliver_due(db_session, filtered, post=receiver) == {"delivered": 1, "unsent": 1}
    assert [c[1]["event"] for c in receiver.calls] == ["job.finished"]
    assert (before.status, job_event.status, test_event.status) == ("unsent", "delivered", "unsent")
    counts = delivery_counts(db_session, since=utcnow() - timedelta(days=1))
    assert counts == {"pending": 0, "delivered": 1, "failed": 0, "unsent": 2}


def test_settings_refuse_an_unknown_event_kind_or_a_non_http_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"unknown event kinds \['deploy'\]"):
        ops_settings(tmp_path, ops_webhook_events="deploy")
    with pytest.raises(SettingsError, match="ops_webhook_url must be an http"):
        ops_settings(tmp_path, ops_webhook_url="hooks.example.com")
    assert "test" in ops_settings(tmp_path).ops_event_kinds  # empty list: every kind


def test_old_events_are_purged_unless_still_waiting(db_session: Session, tmp_path: Path) -> None:
    now = utcnow()
    old_done = emit(db_session, "test", "old, delivered")
    old_waiting = emit(db_session, "test", "old, never sent")
    recent = emit(db_session, "test", "recent")
    old_done.status, old_done.created_at = "delivered", now - timedelta(days=91)
    old_waiting.created_at = now - timedelta(days=91)
    recent.status = "delivered"
    db_session.flush()
    assert purge_old(db_session, ops_settings(tmp_path), now=now) == "deleted 1 events older than 90 days"
    assert sorted(e.text for e in recent_events(db_session)) == ["old, never sent", "recent"]
    assert purge_old(db_session, ops_settings(tmp_path), now=now) is None


def test_a_deployment_change_says_what_serves_now_and_before(db_session: Session) -> None:
    from core.registry import register_model_version, set_deployment

    for version in ("V1", "V2"):
        register_model_version(
            db_session,
            version=version,
            bundle_path=f"/b/{version}",
            metrics={},
            data_hash="x",
            kb_version_id=None,
        )
    set_deployment(db_session, production_version="V1", actor="omar", reason="first")
    set_deployment(
        db_session,
        production_version="V1",
        canary_version="V2",
        canary_share=0.1,
        actor="omar",
        reason="try V2",
    )
    set_deployment(db_session, production_version="V1", actor="canary-guard", reason="canary V2 worse")
    events = recent_events(db_session, kind="deployment.changed")
    assert [e.text for e in events] == [
        "Deployment changed by canary-guard: production V1 "
        "(was production V1, canary V2 on 10% of sessions). Reason: canary V2 worse",
        "Deployment changed by omar: production V1, canary V2 on 10% of sessions (was production V1). "
        "Reason: try V2",
        "Deployment changed by omar: production V1. Reason: first",
    ]
    assert events[0].data["before"] == {
        "production": "V1",
        "canary": "V2",
        "canary_share": 0.1,
        "shadow": None,
    }
    assert events[0].data["now"]["canary"] is None and events[0].data["path"] == "/operator/runs"
    assert events[2].data["before"] is None


def test_finished_jobs_are_announced_but_not_a_scheduled_success(db_session: Session) -> None:
    from training.jobs import claim_next, finish

    def run(kind: str, created_by: str, status: str, **kwargs: Any) -> None:
        job = Job(kind=kind, params={}, created_by=created_by)
        db_session.add(job)
        db_session.flush()
        claimed = claim_next(db_session, worker_id="w")
        assert claimed is not None and claimed.id == job.id
        finish(db_session, job_id=job.id, worker_id="w", status=status, **kwargs)

    gate = {"decision": "better", "difference": {"accuracy": 0.0123}}
    run("train", "omar", "succeeded", result={"version": "V7", "gate": gate})
    run("train", "omar", "failed", error="ValueError: no intents\nTraceback (most recent call last): ...")
    run("retention", "schedule", "succeeded", result={"turns": 3})
    run("retention", "schedule", "failed", error="OperationalError: disk I/O error")
    run("export", "olga", "cancelled", error="cancelled by an operator")
    run("train", "olga", "succeeded", result={"unchanged": True, "same_as": "V7"})
    texts = [e.text for e in reversed(recent_events(db_session, kind="job.finished"))]
    ids = [j.id for j in db_session.scalars(select(Job).order_by(Job.id))]
    assert texts == [
        f"Training run {ids[0]} succeeded: model V7, gate: better (+1.2 points against production) "
        "(started by omar).",
        f"Training run {ids[1]} failed: ValueError: no intents (started by omar).",
        f"Job {ids[3]} (retention) failed: OperationalError: disk I/O error (started by schedule).",
        f"Job {ids[4]} (export) cancelled (started by olga).",
        f"Training run {ids[5]} succeeded: nothing new since model V7, no model built (started by olga).",
    ]
    assert recent_events(db_session, kind="job.finished")[0].data["unchanged_from"] == "V7"
    first = recent_events(db_session, kind="job.finished")[-1]
    assert first.data == {
        "job_id": ids[0],
        "kind": "train",
        "status": "succeeded",
        "created_by": "omar",
        "error": None,
        "version": "V7",
        "unchanged_from": None,
        "gate_decision": "better",
        "path": f"/operator/runs/{ids[0]}",
    }


def test_a_job_given_up_after_lost_workers_is_announced(db_session: Session) -> None:
    from training.jobs import MAX_ATTEMPTS as JOB_ATTEMPTS
    from training.jobs import claim_next

    job = Job(kind="train", params={}, created_by="omar", attempts=JOB_ATTEMPTS, status="running")
    job.lease_expires_at = utcnow() - timedelta(minutes=1)
    db_session.add(job)
    db_session.flush()
    assert claim_next(db_session, worker_id="w") is None
    [event] = recent_events(db_session, kind="job.finished")
    assert event.text == (
        f"Training run {job.id} failed: gave up after {JOB_ATTEMPTS} attempts (worker lost each time) "
        "(started by omar)."
    )


@pytest.mark.postgres
def test_workers_delivering_at_once_send_each_event_once(postgres_schema_url: str, tmp_path: Path) -> None:
    """Four workers look at once on PostgreSQL (SKIP LOCKED): each event is POSTed exactly once."""
    from core.db import make_engine

    settings = ops_settings(tmp_path)
    engine = make_engine(postgres_schema_url)
    with Session(engine) as session:
        session.execute(OpsEvent.__table__.delete())
        ids = [emit(session, "test", f"event {i}").id for i in range(12)]
        session.commit()
    lock = threading.Lock()
    posted: list[int] = []

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        with lock:
            posted.append(json.loads(body)["id"])
        return 200

    at_once(engine, 4, lambda session: deliver_due(session, settings, post=post, limit=5))
    with Session(engine) as session:
        delivered = session.scalar(
            select(func.count()).select_from(OpsEvent).where(OpsEvent.status == "delivered")
        )
        session.execute(OpsEvent.__table__.delete())  # the schema is shared: leave no committed rows
        session.commit()
    engine.dispose()
    assert len(posted) == len(set(posted)) == delivered == 12 and set(posted) == set(ids)
