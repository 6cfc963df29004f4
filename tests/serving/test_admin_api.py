"""The admin API: bearer tokens acting as their operator; knowledge base, retraining, jobs and rollout."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import AccountEvent, ApiToken, Deployment, Job, KnowledgeBaseVersion, ModelVersion
from crowd_feedback.reviewers import create_api_token, revoke_api_token, set_active
from tests.serving.test_admin import add_user, import_small_banking

KB = {
    "intents": [
        {
            "name": "card_arrival",
            "title": "Card arrival",
            "answer": "5-7 working days.",
            "examples": ["where is my card", "my card has not come"],
            "follow_ups": [],
        },
        {
            "name": "change_pin",
            "title": "",
            "answer": "At any ATM.",
            "examples": ["new pin"],
            "follow_ups": [],
        },
    ]
}


def token_for(app: Any, username: str, name: str = "ci") -> str:
    with app.extensions["helploop"].database.session() as session:
        return create_api_token(session, username=username, name=name, actor="test")[1]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def count(app: Any, model: Any) -> int:
    with app.extensions["helploop"].database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_tokens_act_as_their_operator_and_stop_with_them(make_app: Any) -> None:
    import pytest

    from crowd_feedback.reviewers import AccountError

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "olga", "operator")
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    missing = client.get("/api/v1/admin/knowledge")
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/admin/knowledge", headers=bearer("hlk_not-a-token")).status_code == 401
    assert (
        client.get("/api/v1/admin/knowledge", headers={"Authorization": "Basic b21hcg=="}).status_code == 401
    )
    with app.extensions["helploop"].database.session() as session:
        with pytest.raises(AccountError, match="API tokens are for operators"):
            create_api_token(session, username="rita", name="ci", actor="test")
        with pytest.raises(AccountError, match="token name"):
            create_api_token(session, username="omar", name="<script>", actor="test")
    secret = token_for(app, "omar")
    assert secret.startswith("hlk_") and len(secret) > 40
    with app.extensions["helploop"].database.session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash != secret and secret not in json.dumps(
            {c.name: str(getattr(row, c.name)) for c in ApiToken.__table__.columns}
        )
        assert row.prefix == secret[:12] and row.last_used_at is None
    ok = client.get("/api/v1/admin/knowledge", headers=bearer(secret))
    assert ok.status_code == 200 and ok.get_json() == {
        "version": None,
        "data_hash": ok.get_json()["data_hash"],
        "intents": [],
    }
    with app.extensions["helploop"].database.session() as session:
        assert session.scalars(select(ApiToken)).one().last_used_at is not None
        set_active(session, username="omar", active=False, actor="test", reason="left")
    assert client.get("/api/v1/admin/knowledge", headers=bearer(secret)).status_code == 401
    with app.extensions["helploop"].database.session() as session:
        set_active(session, username="omar", active=True, actor="test", reason="back")
    assert client.get("/api/v1/admin/knowledge", headers=bearer(secret)).status_code == 200
    with app.extensions["helploop"].database.session() as session:
        token_id = session.scalars(select(ApiToken.id)).one()
        revoke_api_token(session, token_id=token_id, actor="test")
    assert client.get("/api/v1/admin/knowledge", headers=bearer(secret)).status_code == 401
    with app.extensions["helploop"].database.session() as session:
        actions = [e.action for e in session.scalars(select(AccountEvent).order_by(AccountEvent.id))]
    assert actions.count("token_created") == 1 and actions.count("token_revoked") == 1


def test_knowledge_base_through_the_api_is_validated_whole(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, max_request_bytes=2048, max_upload_bytes=8192)
    add_user(app, "omar", "operator")
    client = app.test_client()
    auth = bearer(token_for(app, "omar"))
    put = client.put("/api/v1/admin/knowledge", json=KB, headers=auth)
    assert put.status_code == 200, put.get_json()
    body = put.get_json()
    assert (body["intents_created"], body["examples_added"], body["intents"], body["examples"]) == (
        2,
        3,
        2,
        3,
    )
    got = client.get("/api/v1/admin/knowledge", headers=auth).get_json()
    assert got["version"] == body["version"] and got["data_hash"] == body["data_hash"]
    assert got["intents"][0]["examples"] == ["where is my card", "my card has not come"]
    with app.extensions["helploop"].database.session() as session:
        assert session.get(KnowledgeBaseVersion, body["version"]).source == "replaced through the API by omar"
    # Merge adds; a bad body changes nothing and says which field; JSON only.
    merged = client.post(
        "/api/v1/admin/knowledge",
        json={"intents": [{"name": "change_pin", "answer": "At any ATM.", "examples": ["forgot my pin"]}]},
        headers=auth,
    ).get_json()
    assert merged["examples_added"] == 1 and merged["intents"] == 2
    versions = count(app, KnowledgeBaseVersion)
    bad = client.put(
        "/api/v1/admin/knowledge",
        json={"intents": [{"name": "card_arrival", "answer": " ", "examples": ["x"]}]},
        headers=auth,
    )
    error = bad.get_json()["error"]
    assert (
        bad.status_code == 400
        and error["code"] == "invalid_knowledge_base"
        and error["field"] == "intents[0].answer"
    )
    assert "request.json" in error["message"]
    wrong_type = client.put(
        "/api/v1/admin/knowledge",
        json={"intents": [{"name": "a", "answer": "b", "examples": "x"}]},
        headers=auth,
    )
    assert wrong_type.status_code == 400 and wrong_type.get_json()["error"]["field"] == "examples"
    not_json = client.put("/api/v1/admin/knowledge", data="intents", headers=auth)
    assert not_json.status_code == 415
    assert count(app, KnowledgeBaseVersion) == versions
    # A knowledge base may be larger than other requests (up to the upload limit), not larger than that.
    bigger = {
        "intents": [{**KB["intents"][0], "examples": [f"where is card number {i}" for i in range(100)]}]
    }
    assert 2048 < len(json.dumps(bigger)) < 8192
    assert client.put("/api/v1/admin/knowledge", json=bigger, headers=auth).status_code == 200
    too_big = {
        "intents": [{**KB["intents"][0], "examples": [f"where is card number {i}" for i in range(400)]}]
    }
    refused = client.put("/api/v1/admin/knowledge", json=too_big, headers=auth)
    assert refused.status_code == 413 and refused.get_json()["error"]["code"] == "payload_too_large"
    assert client.post("/api/v1/chat", data="x" * 3000, content_type="application/json").status_code == 413
    # Versions, newest first; restoring the first push makes it current again as a new version.
    listed = client.get("/api/v1/admin/knowledge/versions?limit=2", headers=auth).get_json()
    assert [v["version"] for v in listed] == [versions + 1, versions] and len(listed) == 2
    assert client.get("/api/v1/admin/knowledge/versions?limit=0", headers=auth).status_code == 400
    restored = client.post(f"/api/v1/admin/knowledge/versions/{body['version']}/restore", headers=auth)
    assert restored.status_code == 200 and restored.get_json()["data_hash"] == body["data_hash"]
    newest = client.get("/api/v1/admin/knowledge/versions", headers=auth).get_json()[0]
    assert newest["source"] == f"version {body['version']} restored by omar (API)"
    missing = client.post("/api/v1/admin/knowledge/versions/999/restore", headers=auth)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "unknown_version"


def test_retraining_jobs_and_rollout_through_the_api(
    make_app: Any, toy_bundles: Any, small_banking: Any
) -> None:
    from bot.engine import AnsweringEngine

    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    client = app.test_client()
    auth = bearer(token_for(app, "omar"))
    empty = client.post("/api/v1/admin/train", json={}, headers=auth)
    assert empty.status_code == 409 and empty.get_json()["error"] == {
        "code": "empty_knowledge_base",
        "message": "the knowledge base is empty: import one with `helploop kb import`",
    }
    import_small_banking(app, small_banking)
    queued = client.post("/api/v1/admin/train", json={"fine_tune": True}, headers=auth)
    job = queued.get_json()
    assert queued.status_code == 202 and job["status"] == "queued" and job["created_by"] == "omar"
    assert job["started_at"] is None and job["finished_at"] is None and job["seconds"] is None
    assert queued.headers["Location"] == f"/api/v1/admin/jobs/{job['id']}"
    with helploop.database.session() as session:
        assert session.get(Job, job["id"]).params == {"onnx": True, "fine_tune": {}}
    assert client.get(queued.headers["Location"], headers=auth).get_json()["status"] == "queued"
    assert client.post("/api/v1/admin/train", json={"fine_tune": "yes"}, headers=auth).status_code == 400
    bad = client.post("/api/v1/admin/train", json={"self_training": "no"}, headers=auth)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "self_training"
    plain = client.post("/api/v1/admin/train", json={"self_training": False}, headers=auth).get_json()
    with helploop.database.session() as session:
        assert session.get(Job, plain["id"]).params == {"onnx": True, "self_training": False}
    client.post(f"/api/v1/admin/jobs/{plain['id']}/cancel", headers=auth)
    bad = client.post("/api/v1/admin/train", json={"force": 1}, headers=auth)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "force"
    forced = client.post("/api/v1/admin/train", json={"force": True}, headers=auth).get_json()
    with helploop.database.session() as session:
        assert session.get(Job, forced["id"]).params == {"onnx": True, "force": True}
    client.post(f"/api/v1/admin/jobs/{forced['id']}/cancel", headers=auth)
    described = client.get("/openapi.json").get_json()["paths"]["/api/v1/admin/train"]["post"]
    body_schema = described["requestBody"]["content"]["application/json"]["schema"]
    assert (
        body_schema["properties"]["self_training"]
        == body_schema["properties"]["force"]
        == {"type": "boolean"}
    )
    cancelled = client.post(f"/api/v1/admin/jobs/{job['id']}/cancel", headers=auth).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["started_at"] is None
    assert datetime.fromisoformat(cancelled["finished_at"]) >= datetime.fromisoformat(cancelled["created_at"])
    assert client.get("/api/v1/admin/jobs/999", headers=auth).status_code == 404

    production = helploop.models.state.production.version
    other = next(
        v for v in (AnsweringEngine.load(p).version for p in toy_bundles.values()) if v != production
    )
    status = client.get("/api/v1/admin/deployment", headers=auth).get_json()
    assert status["production"] == production and status["canary"] is None
    shadow = client.post(
        "/api/v1/admin/deployment",
        json={"action": "shadow", "version": other, "reason": "try it"},
        headers=auth,
    )
    assert shadow.status_code == 200 and shadow.get_json()["shadow"] == other
    with helploop.database.session() as session:
        row = session.scalars(select(Deployment).order_by(Deployment.id.desc())).first()
        assert (row.actor, row.reason, row.shadow_version) == ("omar", "try it", other)
        session.scalars(select(ModelVersion).where(ModelVersion.version == other)).one().metrics = {
            "gate": {"decision": "worse", "difference": {"accuracy": -0.05, "ci95": [-0.08, -0.02]}}
        }
    refused = client.post(
        "/api/v1/admin/deployment",
        json={"action": "promote", "version": other, "reason": "ship"},
        headers=auth,
    )
    assert refused.status_code == 409 and "worse than production" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/admin/deployment", headers=auth).get_json()["production"] == production
    promoted = client.post(
        "/api/v1/admin/deployment",
        json={"action": "promote", "version": other, "reason": "ship", "override_reason": "known fix"},
        headers=auth,
    ).get_json()
    assert promoted["production"] == other and "gate override: known fix" in promoted["reason"]
    helploop.models.refresh()
    assert helploop.models.state.production.version == other
    back = client.post(
        "/api/v1/admin/deployment", json={"action": "rollback", "reason": "oops"}, headers=auth
    )
    assert back.status_code == 200 and back.get_json()["production"] == production
    for body, code in (
        ({"action": "launch", "reason": "x"}, 409),
        ({"action": "shadow", "version": other}, 409),
        ({"action": "canary", "version": other, "reason": "x", "share": "half"}, 400),
        ({"action": "canary", "version": other, "reason": "x", "share": 2}, 409),
        ({"action": 3, "reason": "x"}, 400),
        ({"action": "end_canary", "reason": "x"}, 409),  # no canary is serving
    ):
        answer = client.post("/api/v1/admin/deployment", json=body, headers=auth)
        assert answer.status_code == code, (body, answer.get_json())


def test_answer_precision_through_the_api(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    client = app.test_client()
    auth = bearer(token_for(app, "omar"))
    assert client.get("/api/v1/admin/precision").status_code == 401
    shown = client.get("/api/v1/admin/precision", headers=auth).get_json()
    assert (
        shown["target_precision"] is None and shown["production"] == helploop.models.state.production.version
    )
    options = {o["target_precision"]: o for o in shown["options"]}
    assert sorted(options) == [0.8, 0.85, 0.9, 0.95, 0.97, 0.99] and options[0.9]["built_for"]
    assert options[0.8]["answers"] >= options[0.99]["answers"]
    for body, code in (
        ({"reason": "x"}, 400),  # no target_precision at all
        ({"target_precision": "high", "reason": "x"}, 400),
        ({"target_precision": 0.93, "reason": "x"}, 400),
        ({"target_precision": 0.99}, 400),
        ({"target_precision": 0.99, "reason": " "}, 400),
    ):
        answer = client.post("/api/v1/admin/precision", json=body, headers=auth)
        assert answer.status_code == code, (body, answer.get_json())
        assert "error" in answer.get_json()
    strict = client.post(
        "/api/v1/admin/precision",
        json={"target_precision": 0.99, "reason": "audit found errors"},
        headers=auth,
    ).get_json()
    assert (strict["target_precision"], strict["changed_by"], strict["reason"]) == (
        0.99,
        "omar",
        "audit found errors",
    )
    helploop.models.refresh()
    assert helploop.models.state.production.gate.target_precision == 0.99
    built = client.post(
        "/api/v1/admin/precision", json={"target_precision": None, "reason": "back"}, headers=auth
    ).get_json()
    helploop.models.refresh()
    assert built["target_precision"] is None and helploop.models.state.production.gate.target_precision == 0.9


def test_operators_create_and_revoke_tokens_on_the_accounts_page(make_app: Any) -> None:
    import re

    from tests.serving.test_admin import csrf_token, login

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    token = csrf_token(reviewer.get("/review/guidelines").get_data(as_text=True))
    assert (
        reviewer.post("/operator/accounts/tokens", data={"csrf_token": token, "name": "x"}).status_code == 403
    )
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/accounts").get_data(as_text=True)
    assert client.post("/operator/accounts/tokens", data={"name": "ci"}).status_code == 400  # no CSRF token
    created = client.post(
        "/operator/accounts/tokens", data={"csrf_token": csrf_token(page), "name": "ci deploy"}
    )
    text = created.get_data(as_text=True)
    match = re.search(r'id="new-token">.*?<code[^>]*>(hlk_[^<]+)</code>', text, re.S)
    assert created.status_code == 200 and match
    secret = match.group(1)
    assert client.get("/api/v1/admin/deployment", headers=bearer(secret)).status_code == 200
    again = client.get("/operator/accounts").get_data(as_text=True)
    assert secret not in again and secret[:12] + "…" in again and 'data-token="1"' in again
    bad = client.post(
        "/operator/accounts/tokens",
        data={"csrf_token": csrf_token(again), "name": "<b>"},
        follow_redirects=True,
    )
    assert "Refused: token name" in bad.get_data(as_text=True) and count(app, ApiToken) == 1
    revoked = client.post(
        "/operator/accounts/tokens/1/revoke", data={"csrf_token": csrf_token(again)}, follow_redirects=True
    )
    assert "Token 1 revoked" in revoked.get_data(as_text=True)
    assert client.get("/api/v1/admin/deployment", headers=bearer(secret)).status_code == 401
    missing = client.post(
        "/operator/accounts/tokens/9/revoke", data={"csrf_token": csrf_token(again)}, follow_redirects=True
    )
    assert "Refused: no API token 9" in missing.get_data(as_text=True)


def test_stats_give_the_overview_as_data_for_a_dashboard(make_app: Any) -> None:
    from core.registry import agent_reply, rate_chat, request_handoff

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)  # no random audit: nothing pending
    add_user(app, "omar", "operator")
    client = app.test_client()
    headers = bearer(token_for(app, "omar"))
    for message in ("where is my card", "change pin number", "qwxz vbnm"):
        client.post("/api/v1/chat", json={"message": message})
    with app.extensions["helploop"].database.session() as session:
        session_id = client.post("/api/v1/chat", json={"message": "hello, a question"}).get_json()[
            "session_id"
        ]
        request_handoff(session, conversation_id=session_id)
        agent_reply(session, conversation_id=session_id, agent="omar", text="Hi")
        rate_chat(session, conversation_id=session_id, rating=5)
        session.commit()
    # A reviewer takes a review item and answers it 8 s later.
    from core.models import User, utcnow
    from crowd_feedback.review import NOT_A_QUESTION
    from tests.conftest import answer_next

    add_user(app, "rita", "reviewer")
    policy = app.extensions["helploop"].policy
    with app.extensions["helploop"].database.session() as session:
        rita = session.scalars(select(User).where(User.username == "rita")).one()
        answer_next(session, rita, NOT_A_QUESTION, policy=policy, known_intents=[], taken=utcnow(), seconds=8)
        session.commit()
    assert client.get("/api/v1/admin/stats").status_code == 401
    for bad in ("0", "91", "x", "-1"):
        refused = client.get(f"/api/v1/admin/stats?days={bad}", headers=headers)
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid_days"
    body = client.get("/api/v1/admin/stats?days=7", headers=headers).get_json()
    assert body["days"] == 7 and len(body["traffic"]) == 7
    assert body["asked_again"] == {"answered": 0, "handed_over": 0}  # four conversations of one message
    today = body["traffic"][-1]
    assert today["answered"] + today["clarify"] + today["handoff"] == 4
    assert set(body) == {
        "days",
        "since",
        "traffic",
        "did_you_mean",
        "that_is_wrong",
        "satisfaction",
        "answer_quality",
        "review",
        "kept_out",
        "other_languages",
        "asked_again",
        "team_response",
    }
    team = body["team_response"]
    assert team["within_hours"] is None and team["outside_hours"] is None  # no team hours set
    handed = 1 + today["handoff"]  # the conversation that asked for a person, and those the bot handed off
    assert team["all"]["handed"] in (handed, handed - 1)  # (less one if "hello, a question" was handed off)
    assert (team["all"]["replied"], team["all"]["handled"], team["all"]["contact_only"]) == (1, 0, 0)
    assert 0 <= team["all"]["median_first_reply_seconds"] == team["all"]["p90_first_reply_seconds"] < 60
    assert team["all"]["median_to_handled_seconds"] is None
    assert body["kept_out"] == []  # no page asked for metadata
    assert body["other_languages"] == {}  # nothing declined in another language
    review = body["review"]
    assert (review["judgements"], review["timed"], review["median_seconds"]) == (1, 1, 8.0)
    assert review["hours"] == pytest.approx(8 / 3600) and review["resolved_items"] == 0
    assert review["seconds_per_resolved"] is None  # one judgement resolves nothing
    assert review["reviewers"] == [
        {
            "username": "rita",
            "role": "reviewer",
            "status": "active",
            "judgements": 1,
            "agreement": None,
            "gold_answered": 0,
            "gold_accuracy": None,
            "median_seconds": 8.0,
            "per_hour": None,  # 8 s of work: too little for an hourly rate
            "fast": False,
            "last_judged_at": review["reviewers"][0]["last_judged_at"],
        }
    ]
    assert review["reviewers"][0]["last_judged_at"] is not None
    assert body["satisfaction"]["ratings"] == 1 and body["satisfaction"]["csat"] == 1.0
    assert body["satisfaction"]["people"] == [{"agent": "omar", "ratings": 1, "csat": 1.0, "mean": 5.0}]
    assert body["did_you_mean"]["asked"] == today["clarify"] and body["did_you_mean"]["pick_checked"] == 0
    assert body["that_is_wrong"] == {
        "offered": 0,
        "picked": 0,
        "by_rank": {},
        "pick_checked": 0,
        "pick_accuracy": None,
        "pick_lift": None,
        "pick_weight": 0.0,
        "corrections": [],
    }
    assert body["answer_quality"] == {"audited": 0, "precision": None, "interval": None, "audits_pending": 0}
    assert "/api/v1/admin/stats" in client.get("/openapi.json").get_json()["paths"]


def test_synonyms_through_the_api(make_app: Any) -> None:
    """The JSON format carries the synonyms both ways; a group with a phrase of another is refused naming
    the field, and nothing changes; a PUT without "synonyms" keeps them, with [] clears them."""
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    client = app.test_client()
    auth = bearer(token_for(app, "omar"))
    groups = [["cashpoint", "ATM"], ["plastic", "card"]]
    put = client.put("/api/v1/admin/knowledge", json={**KB, "synonyms": groups}, headers=auth)
    assert put.status_code == 200, put.get_json()
    assert client.get("/api/v1/admin/knowledge", headers=auth).get_json()["synonyms"] == groups
    bad = client.post(
        "/api/v1/admin/knowledge",
        json={**KB, "synonyms": [["atm", "cash machine"], ["ATM", "x"]]},
        headers=auth,
    )
    error = bad.get_json()["error"]
    assert (
        bad.status_code == 400
        and error["field"] == "synonyms[1]"
        and "already in the group" in error["message"]
    )
    assert client.put("/api/v1/admin/knowledge", json=KB, headers=auth).status_code == 200
    assert client.get("/api/v1/admin/knowledge", headers=auth).get_json()["synonyms"] == groups
    assert client.put("/api/v1/admin/knowledge", json={**KB, "synonyms": []}, headers=auth).status_code == 200
    assert "synonyms" not in client.get("/api/v1/admin/knowledge", headers=auth).get_json()


def test_files_and_web_addresses_import_through_the_api_as_jobs(make_app: Any, site: str) -> None:
    import io

    from core.knowledge_base import load_knowledge_base
    from core.models import ImportUpload
    from tests.conftest import FIXTURES
    from training.jobs import Worker

    app = make_app(ratelimit_enabled=False, import_private_addresses=True)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    headers = bearer(token_for(app, "omar"))
    client = app.test_client()
    manual = (FIXTURES / "documents" / "northbank_manual.pdf").read_bytes()

    def post_files(files: list[tuple[bytes, str]], **form: str) -> Any:
        data: dict[str, Any] = {"files": [(io.BytesIO(c), n) for c, n in files], **form}
        return client.post("/api/v1/admin/knowledge/files", data=data, headers=headers)

    missing = client.post("/api/v1/admin/knowledge/files", data={}, headers=headers)
    assert missing.status_code == 400 and missing.get_json()["error"]["code"] == "missing_files"
    odd = post_files([(b"x", "notes.txt")])
    assert odd.status_code == 400 and odd.get_json()["error"]["message"].startswith(
        "notes.txt: unknown file type"
    )
    assert post_files([(manual, "m.pdf")], mode="swap").get_json()["error"]["field"] == "mode"
    anonymous = client.post("/api/v1/admin/knowledge/files", data={"files": [(io.BytesIO(manual), "m.pdf")]})
    assert anonymous.status_code == 401
    assert count(app, Job) == 0 and count(app, ImportUpload) == 0  # nothing queued or kept for any of them

    queued = post_files([(manual, "manual.pdf"), (b"text,label\nhi there,greet\n", "extra.csv")])
    assert queued.status_code == 202
    job = queued.get_json()
    assert queued.headers["Location"] == f"/api/v1/admin/jobs/{job['id']}"
    assert (job["kind"], job["status"], job["created_by"]) == ("kb_import_upload", "queued", "omar")
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == job["id"]
    # all or nothing: the CSV's intent has no answer, so the job fails and imports nothing
    failed = client.get(f"/api/v1/admin/jobs/{job['id']}", headers=headers).get_json()
    assert failed["status"] == "failed" and "'greet' has no answer" in failed["error"]
    assert count(app, ImportUpload) == 0

    done = post_files([(manual, "manual.pdf")])
    Worker(helploop.database, helploop.settings, worker_id="test").run_once()
    finished = client.get(done.headers["Location"], headers=headers).get_json()
    assert finished["status"] == "succeeded" and finished["result"]["intents_created"] == 4
    assert finished["result"]["files"] == ["manual.pdf"]

    refused = client.post("/api/v1/admin/knowledge/import-url", json={"url": "ftp://x"}, headers=headers)
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "url"
    fetched = client.post(
        "/api/v1/admin/knowledge/import-url", json={"url": f"{site}/help/faq"}, headers=headers
    )
    assert fetched.status_code == 202 and fetched.get_json()["kind"] == "kb_import_url"
    Worker(helploop.database, helploop.settings, worker_id="test").run_once()
    assert client.get(fetched.headers["Location"], headers=headers).get_json()["status"] == "succeeded"
    with helploop.database.session() as session:
        assert len(load_knowledge_base(session).intents) == 6  # the manual's 4 and the page's 2
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "multipart/form-data" in paths["/api/v1/admin/knowledge/files"]["post"]["requestBody"]["content"]
    assert "/api/v1/admin/knowledge/import-url" in paths
    assert "Request body (multipart/form-data):" in client.get("/docs").get_data(as_text=True)
