"""Serving follows the deployment table: atomic swaps, broken bundles refused, canary split, shadow log."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.engine import AnsweringEngine
from core.models import Turn
from core.registry import get_or_create_conversation, register_model_version, set_deployment
from serving.model_holder import bucket
from tests.serving.conftest import hashing_loader


def versions(toy_bundles: dict[str, Path]) -> dict[str, str]:
    return {name: AnsweringEngine.load(path).version for name, path in toy_bundles.items()}


def deploy(app: Any, **kwargs: Any) -> None:
    with app.extensions["helploop"].database.session() as session:
        set_deployment(session, actor="test", reason="test", **kwargs)


def serving_version(app: Any) -> str:
    return app.extensions["helploop"].models.state.production.version


def test_follows_the_newest_deployment(app: Any, toy_bundles: dict[str, Path]) -> None:
    v = versions(toy_bundles)
    assert serving_version(app) == v["v2"]  # no deployment yet: newest registered model
    deploy(app, production_version=v["v1"])
    assert app.extensions["helploop"].models.refresh() is True
    assert serving_version(app) == v["v1"]
    client = app.test_client()
    assert (
        client.post("/api/v1/chat", json={"message": "where is my card"}).get_json()["model_version"]
        == v["v1"]
    )
    assert app.extensions["helploop"].models.refresh() is False  # nothing changed


def test_requests_never_wait_on_a_load(make_app: Any, toy_bundles: dict[str, Path]) -> None:
    """The new model's load is held open until a request has been answered: answered by the old model, it
    never waited (no timing: a slow machine cannot fail it, a request that waits for the load would)."""
    loading, release = threading.Event(), threading.Event()

    def slow_loader(path: str) -> AnsweringEngine:
        if path.endswith("v1"):
            loading.set()
            assert release.wait(60)
        return hashing_loader(path)

    app = make_app(model_loader=slow_loader)
    v = versions(toy_bundles)
    deploy(app, production_version=v["v1"])
    swap = threading.Thread(target=app.extensions["helploop"].models.refresh)
    swap.start()
    assert loading.wait(5)
    client = app.test_client()
    replies: list[Any] = []
    request = threading.Thread(
        target=lambda: replies.append(client.post("/api/v1/chat", json={"message": "where is my card"}))
    )
    request.start()
    request.join(timeout=30)
    answered_during_the_load = not request.is_alive()
    release.set()
    swap.join()
    request.join()
    assert answered_during_the_load
    assert replies[0].get_json()["model_version"] == v["v2"]  # the old model answered
    assert serving_version(app) == v["v1"]


def test_broken_bundle_is_refused_and_the_current_model_keeps_serving(
    app: Any, toy_bundles: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"format": 1, "version": "broken"}')
    with app.extensions["helploop"].database.session() as session:
        register_model_version(
            session,
            version="broken-1",
            bundle_path=str(broken),
            data_hash="0" * 64,
            metrics={},
            kb_version_id=None,
        )
    before = serving_version(app)
    deploy(app, production_version="broken-1")
    assert app.extensions["helploop"].models.refresh() is False
    assert serving_version(app) == before
    assert "broken-1" in app.extensions["helploop"].models.last_error
    client = app.test_client()
    assert client.post("/api/v1/chat", json={"message": "where is my card"}).status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "refused" in ready.get_json()["last_error"]


def test_canary_share_by_stable_session_hash(make_app: Any, toy_bundles: dict[str, Path]) -> None:
    app = make_app(ratelimit_enabled=False)
    v = versions(toy_bundles)
    deploy(app, production_version=v["v1"], canary_version=v["v2"], canary_share=0.3)
    app.extensions["helploop"].models.refresh()
    client = app.test_client()
    arms = []
    for i in range(120):
        session_id = f"session-{i:04d}"
        with app.extensions["helploop"].database.session() as session:
            get_or_create_conversation(session, conversation_id=session_id, channel="widget")
        first = client.post("/api/v1/chat", json={"message": "where is my card", "session_id": session_id})
        second = client.post("/api/v1/chat", json={"message": "change pin", "session_id": session_id})
        assert first.get_json()["model_version"] == second.get_json()["model_version"]  # never flips
        expected = v["v2"] if bucket(session_id) < 0.3 else v["v1"]
        assert first.get_json()["model_version"] == expected
        arms.append(first.get_json()["model_version"] == v["v2"])
    assert 0.15 < sum(arms) / len(arms) < 0.45
    with app.extensions["helploop"].database.session() as session:
        served = {t.served_by for t in session.scalars(select(Turn))}
    assert served == {"production", "canary"}


def test_shadow_is_scored_and_logged_but_never_shown(app: Any, toy_bundles: dict[str, Path]) -> None:
    v = versions(toy_bundles)
    deploy(app, production_version=v["v1"], shadow_version=v["v2"])
    app.extensions["helploop"].models.refresh()
    body = app.test_client().post("/api/v1/chat", json={"message": "where is my card"}).get_json()
    assert body["model_version"] == v["v1"]
    assert app.extensions["helploop"].shadow.drain(10)
    assert app.extensions["helploop"].shadow.scored == 1
    with app.extensions["helploop"].database.session() as session:
        turn = session.get(Turn, body["turn_id"])
        assert turn.shadow_prediction["model_version"] == v["v2"]
        assert turn.shadow_prediction["top_intent"] == "card_arrival"


def test_background_thread_picks_up_a_rollback(make_app: Any, toy_bundles: dict[str, Path]) -> None:
    app = make_app(deployment_poll_seconds=0.1)
    v = versions(toy_bundles)
    holder = app.extensions["helploop"].models
    holder.start()
    deploy(app, production_version=v["v1"])
    deadline = time.time() + 10
    while serving_version(app) != v["v1"] and time.time() < deadline:
        time.sleep(0.05)
    assert serving_version(app) == v["v1"]
    deploy(app, production_version=v["v2"])  # roll back / forward: one row, no restart
    deadline = time.time() + 10
    while serving_version(app) != v["v2"] and time.time() < deadline:
        time.sleep(0.05)
    assert serving_version(app) == v["v2"]


def test_the_runs_page_names_the_model_a_rollback_returns_to(
    make_app: Any, toy_bundles: dict[str, Path]
) -> None:
    from tests.serving.test_admin import add_user, csrf_token, login

    app = make_app(ratelimit_enabled=False)
    v = versions(toy_bundles)
    deploy(app, production_version=v["v1"])
    deploy(app, production_version=v["v2"], shadow_version=v["v1"])
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/runs").get_data(as_text=True)
    assert f"Roll back to <code>{v['v1']}</code>" in page
    response = client.post(
        "/operator/deploy",
        data={"csrf_token": csrf_token(page), "action": "rollback", "reason": "complaints"},
        follow_redirects=True,
    )
    assert f"Done: production {v['v1']} (by omar: complaints)" in response.get_data(as_text=True)
    app.extensions["helploop"].models.refresh()
    assert serving_version(app) == v["v1"]
    # back on v1, the earlier production model is v2: the page now offers that
    assert f"Roll back to <code>{v['v2']}</code>" in client.get("/operator/runs").get_data(as_text=True)
