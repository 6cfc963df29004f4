"""The ops webhook over real HTTP, the Activity page and GET /api/v1/admin/events."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from http.server import HTTPServer
from typing import Any

from sqlalchemy import select

from core.models import ModelVersion, OpsEvent, utcnow
from tests.serving.conftest import Receiver
from tests.serving.test_admin import _token, add_user, csrf_token, login
from training.jobs import Worker


def worker_looks(app: Any) -> list[str]:
    """One tick of a worker's watcher thread (the embedded worker is off in tests)."""
    from serving import job_kinds

    job_kinds.install()
    helploop = app.extensions["helploop"]
    return Worker(helploop.database, helploop.settings).look_around()


def test_a_deployment_change_reaches_the_ops_webhook_signed_and_is_listed(
    make_app: Any, receiver: str
) -> None:
    app = make_app(
        ratelimit_enabled=False,
        ops_webhook_url=receiver,
        ops_webhook_secret="s3cret",
        public_url="https://help.example.com",
    )
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    production = helploop.models.state.production.version
    with helploop.database.session() as session:
        other = next(m.version for m in session.scalars(select(ModelVersion)) if m.version != production)
    page = operator.get("/operator/runs").get_data(as_text=True)
    form = {"csrf_token": csrf_token(page), "action": "shadow", "version": other, "reason": "watch it"}
    assert operator.post("/operator/deploy", data=form).status_code == 302
    activity = operator.get("/operator/activity").get_data(as_text=True)
    assert "Ops webhook: <strong>127.0.0.1:" in activity and "signed" in activity
    assert '<meta http-equiv="refresh" content="5">' in activity  # waiting: the page follows it
    row = activity[activity.index('data-kind="deployment.changed"') :]
    assert 'data-status="pending"' in activity and "waiting" in row[: row.index("</tr>")]
    assert not [line for line in worker_looks(app) if line.startswith("ops_webhook")]  # no news: it worked
    [delivery] = Receiver.received
    body = delivery["body"]
    assert delivery["event"] == "deployment.changed" == body["event"]
    assert (
        delivery["signature"] == "sha256=" + hmac.new(b"s3cret", delivery["raw"], hashlib.sha256).hexdigest()
    )
    assert body["text"].startswith(f"Deployment changed by omar: production {production}, shadow {other}")
    assert body["text"].endswith("Reason: watch it https://help.example.com/operator/runs")
    assert body["data"]["now"]["shadow"] == other and body["data"]["actor"] == "omar"
    activity = operator.get("/operator/activity").get_data(as_text=True)
    assert "refresh" not in activity and 'data-status="delivered"' in activity
    assert "Last 7 days: 1 delivered · 0 waiting" in activity
    # The test button: recorded, sent on the next look, listed as delivered.
    sent = operator.post(
        "/operator/activity/test", data={"csrf_token": csrf_token(activity)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "a worker sends it within seconds" in sent
    worker_looks(app)
    assert [r["body"]["event"] for r in Receiver.received] == ["deployment.changed", "test"]
    assert Receiver.received[1]["body"]["text"].startswith("Test message from HelpLoop, sent by omar")
    # Filtered by kind; the admin API lists the same.
    only_tests = operator.get("/operator/activity?kind=test").get_data(as_text=True)
    assert 'data-kind="test"' in only_tests and 'data-kind="deployment.changed"' not in only_tests
    assert operator.get("/operator/activity?kind=nonsense").status_code == 404
    api = _token(app, "omar")
    listed = operator.get("/api/v1/admin/events", headers=api).get_json()
    assert [(e["kind"], e["status"], e["attempts"]) for e in listed] == [
        ("test", "delivered", 1),
        ("deployment.changed", "delivered", 1),
    ]
    assert listed[1]["url"] == "https://help.example.com/operator/runs" and listed[1]["delivered_at"]
    one = operator.get("/api/v1/admin/events?kind=deployment.changed&limit=1", headers=api).get_json()
    assert [e["id"] for e in one] == [listed[1]["id"]]
    bad = operator.get("/api/v1/admin/events?kind=deploy", headers=api)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "kind"
    bad = operator.get("/api/v1/admin/events?limit=0", headers=api)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_value"
    assert operator.get("/api/v1/admin/events").status_code == 401


def test_a_receiver_that_is_down_is_retried_and_can_be_sent_again(make_app: Any) -> None:
    with HTTPServer(("127.0.0.1", 0), Receiver) as closed:
        dead_url = f"http://127.0.0.1:{closed.server_port}/ops"  # bound, never served, then closed
    app = make_app(ratelimit_enabled=False, ops_webhook_url=dead_url)
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert "not signed" in page and "Send a test event" in page
    operator.post("/operator/activity/test", data={"csrf_token": csrf_token(page)})
    assert "ops_webhook: retry 1" in worker_looks(app)
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert "waiting (attempt 1 failed: URLError:" in page and "next at" in page
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:  # the last attempt, 15 minutes on
        event = session.scalars(select(OpsEvent)).one()
        event.attempts, event.next_attempt_at = 4, utcnow() - timedelta(seconds=1)
        event_id = event.id
    worker_looks(app)
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert "failed after 5 attempts: URLError:" in page and '<span class="warn">1 failed</span>' in page
    metrics = operator.get("/metrics").get_data(as_text=True)  # something to alert on
    assert 'helploop_ops_events{status="failed"} 1.0' in metrics
    assert 'helploop_ops_events{status="delivered"} 0.0' in metrics
    again = operator.post(
        f"/operator/activity/{event_id}/resend", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert f"Event {event_id} queued to be sent again." in again and 'data-status="pending"' in again
    refused = operator.post(
        f"/operator/activity/{event_id}/resend", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Not changed: event" in refused and "already waiting" in refused


def test_the_activity_page_is_for_operators_and_its_forms_need_csrf(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/activity").status_code == 403
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert "No ops webhook is set" in page and "nothing yet" in page
    assert operator.post("/operator/activity/test").status_code == 400  # no CSRF token
    recorded = operator.post(
        "/operator/activity/test", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "recorded, but no ops webhook is set" in recorded
    worker_looks(app)  # nobody to tell: the event is kept, marked not sent
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert 'data-status="unsent"' in page and "not sent" in page
