"""Follow-up questions in the chat: "how long does that take?" after "where is my card" is read with it
(web chat, terminal chat, shadow), logged with what the model read, and kept out of self-training; the
crowd's label for it trains the question as it was read."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, update

from bot.engine import AnsweringEngine, EngineConfig, IntentInfo
from core.models import Turn, utcnow
from crowd_feedback.reviewers import create_user
from tests.conftest import TIMING, TOY, HashingEncoder
from tests.serving.conftest import ANSWERS
from tests.serving.test_admin import PASSWORD, add_user, login

FOLLOW_UP = "how long does that take?"


def build_timing_bundle(directory: Path) -> Path:
    data = {**TOY, **TIMING}
    texts = [t for rows in data.values() for t in rows]
    labels = [label for label, rows in data.items() for _ in rows]
    knowledge = {**ANSWERS} | {n: IntentInfo(answer=f"About {n}.", title=n) for n in TIMING}
    engine = AnsweringEngine(
        EngineConfig(cv_folds=3, target_precision=0.9), encoders={"minilm": HashingEncoder()}
    )
    engine.fit(texts, labels, knowledge=knowledge)
    engine.save(directory)
    return directory


@pytest.fixture(scope="module")
def timing_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_timing_bundle(tmp_path_factory.mktemp("timing") / "bundle")


def register(app: Any, bundle: Path) -> str:
    """Register ``bundle`` as a model of ``app``; its version."""
    from core.registry import register_model_version

    manifest = AnsweringEngine.load(bundle).manifest
    with app.extensions["helploop"].database.session() as session:
        register_model_version(
            session,
            version=manifest["version"],
            bundle_path=str(bundle),
            data_hash=manifest["data_hash"],
            metrics={},
            kb_version_id=None,
        )
    return str(manifest["version"])


@pytest.fixture
def follow_app(make_app: Any, timing_bundle: Path) -> Any:
    def factory(**overrides: Any) -> Any:
        app = make_app(register=False, load=False, ratelimit_enabled=False, **overrides)
        register(app, timing_bundle)
        assert app.extensions["helploop"].models.refresh()
        return app

    return factory


def chat(client: Any, message: str, session_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if session_id:
        body["session_id"] = session_id
    response = client.post("/api/v1/chat", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def turns(app: Any) -> list[Turn]:
    with app.extensions["helploop"].database.session() as session:
        return list(session.scalars(select(Turn).order_by(Turn.id)))


def test_a_follow_up_is_answered_with_the_question_before_it(follow_app: Any) -> None:
    app = follow_app(review_audit_rate=0.0)
    client = app.test_client()
    alone = chat(client, FOLLOW_UP)  # a conversation's first message: nothing to read it with
    assert alone["status"] != "answered"
    first = chat(client, "where is my card")
    assert first["status"] == "answered" and first["intent"] == "card_arrival"
    follow = chat(client, FOLLOW_UP, first["session_id"])
    assert follow["status"] == "answered" and follow["intent"] == "card_delivery_estimate"
    assert follow["answer"] == "About card_delivery_estimate."
    logged = turns(app)
    assert [t.context_text for t in logged] == [None, None, "where is my card"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_follow_ups_total{status="answered"} 1.0' in metrics
    assert logged[-1].user_text == FOLLOW_UP  # the log keeps the message as typed
    # the conversation page shows what the model read
    conversation = turns(app)[2].conversation_id
    add_user(app, "omar", "operator")
    login(client, "omar")
    page = client.get(f"/operator/conversations/{conversation}").get_data(as_text=True)
    assert "read after" in page and "“where is my card”" in page


def test_the_question_before_must_be_recent(follow_app: Any) -> None:
    app = follow_app(review_audit_rate=0.0, follow_up_minutes=30)
    client = app.test_client()
    first = chat(client, "where is my card")
    with app.extensions["helploop"].database.session() as session:
        session.execute(update(Turn).values(created_at=utcnow() - timedelta(minutes=31)))
    late = chat(client, FOLLOW_UP, first["session_id"])
    assert late["status"] != "answered" and turns(app)[-1].context_text is None


def test_follow_ups_can_be_turned_off(follow_app: Any) -> None:
    off = follow_app(review_audit_rate=0.0, follow_ups=False)
    other = off.test_client()
    first = chat(other, "where is my card")
    plain = chat(other, FOLLOW_UP, first["session_id"])
    assert plain["status"] != "answered" and turns(off)[-1].context_text is None


def test_a_follow_up_is_reviewed_on_its_own_item_and_trained_as_it_was_read(follow_app: Any) -> None:
    """Audited (every answer, here): the follow-up opens its own item (its words alone would join any "how
    long does that take?"); resolved, its training pair is the question as the model read it. Self-training
    leaves it out."""
    from core.models import ReviewItemTurn, User, VerifiedPair
    from crowd_feedback.review import operator_resolve
    from training.build import traffic_questions

    app = follow_app(review_audit_rate=1.0)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    chat(client, FOLLOW_UP)  # alone: a review item of its own (clarify)
    first = chat(client, "where is my card")
    follow = chat(client, FOLLOW_UP, first["session_id"])
    assert follow["intent"] == "card_delivery_estimate"
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        links = {link.turn_id: link.item_id for link in session.scalars(select(ReviewItemTurn))}
        logged = list(session.scalars(select(Turn).order_by(Turn.id)))
        assert logged[2].context_text == "where is my card"
        assert len({links[t.id] for t in logged}) == 3  # nothing joined the other "how long does that take?"
        item = links[logged[2].id]
        alone_item = links[logged[0].id]
        operator_id = create_user(session, username="omar", password=PASSWORD, role="operator").id
        session.commit()
    login(client, "omar")  # the operator's item page says how the bot read it
    page = client.get(f"/review/items/{item}").get_data(as_text=True)
    assert 'id="read-after"' in page and "together with the question before it, “where is my card”" in page
    assert 'id="read-after"' not in client.get(f"/review/items/{alone_item}").get_data(as_text=True)
    with helploop.database.session() as session:
        operator = session.get(User, operator_id)
        assert operator is not None
        operator_resolve(
            session,
            item_id=item,
            label="card_delivery_estimate",
            known_intents=[*TOY, *TIMING],
            operator=operator,
            policy=helploop.policy,
        )
        session.commit()
        pairs = session.scalars(select(VerifiedPair.text).where(VerifiedPair.item_id == item)).all()
        assert pairs == [f"where is my card {FOLLOW_UP}"]
        assert FOLLOW_UP not in traffic_questions(session, exclude=[], limit=100)


def test_no_look_alike_joins_a_follow_ups_item_later(follow_app: Any) -> None:
    """The follow-up's item first, then the same words alone elsewhere: the item gets no vector from its
    question's words (the router gives vectors to items without one), so nothing joins it."""
    from core.models import ReviewItem, ReviewItemTurn

    app = follow_app(review_audit_rate=1.0)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    first = chat(client, "where is my card")
    chat(client, FOLLOW_UP, first["session_id"])
    assert helploop.router.drain(10)
    for _ in range(2):  # twice: the first gives vectors to items that lack one, the second joins look-alikes
        chat(client, FOLLOW_UP)
        assert helploop.router.drain(10)
    with helploop.database.session() as session:
        logged = list(session.scalars(select(Turn).order_by(Turn.id)))
        links = {link.turn_id: link.item_id for link in session.scalars(select(ReviewItemTurn))}
        follow_item = session.get(ReviewItem, links[logged[1].id])
        assert logged[1].context_text == "where is my card"
        assert follow_item is not None and follow_item.embedding is None
        assert [t for t, i in links.items() if i == follow_item.id] == [logged[1].id]
        assert links[logged[2].id] == links[logged[3].id] != follow_item.id  # the two alone: one item


def test_the_terminal_chat_reads_follow_ups_too(timing_bundle: Path, settings: Any) -> None:
    from serving.terminal import run_terminal_chat

    engine = AnsweringEngine.load(timing_bundle)
    engine.encoders["minilm"] = HashingEncoder()
    out = io.StringIO()
    run_terminal_chat(
        engine, settings=settings, stdin=io.StringIO(f"where is my card\n{FOLLOW_UP}\n\n"), stdout=out
    )
    assert "About card_delivery_estimate." in out.getvalue()
    alone = io.StringIO()
    run_terminal_chat(engine, settings=settings, stdin=io.StringIO(f"{FOLLOW_UP}\n\n"), stdout=alone)
    assert "About card_delivery_estimate." not in alone.getvalue()


def test_the_question_before_is_what_the_model_read(settings: Any) -> None:
    """Without the small talk around it, and after its own earlier question when it was a follow-up."""
    from bot.follow_up import Earlier
    from core.registry import EarlierQuestion
    from serving.api import earlier_reading

    assert earlier_reading(None, settings) is None
    plain = EarlierQuestion("Hi! Where is my card? Thanks", None, "card_arrival")
    assert earlier_reading(plain, settings) == Earlier("Where is my card?", "card_arrival")
    chained = EarlierQuestion(FOLLOW_UP, "where is my card", "card_delivery_estimate")
    assert earlier_reading(chained, settings) == Earlier(
        f"where is my card {FOLLOW_UP}", "card_delivery_estimate"
    )


def test_the_shadow_reads_a_follow_up_after_the_same_question(
    make_app: Any, timing_bundle: Path, toy_bundles: dict[str, Path]
) -> None:
    """Production (the toy model, registered by make_app) answered the first question; the shadow reads the
    follow-up after it, as it would have served it."""
    from tests.serving.test_rollout import deploy

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    shadow = register(app, timing_bundle)
    production = AnsweringEngine.load(toy_bundles["v1"]).version
    deploy(app, production_version=production, shadow_version=shadow)
    helploop.models.refresh()
    client = app.test_client()
    first = chat(client, "where is my card")
    assert first["intent"] == "card_arrival" and first["model_version"] == production
    follow = chat(client, FOLLOW_UP, first["session_id"])
    assert helploop.shadow.drain(10)
    with helploop.database.session() as session:
        shadowed = session.get(Turn, follow["turn_id"]).shadow_prediction
        alone = session.get(Turn, first["turn_id"]).shadow_prediction
    assert shadowed["read_with_earlier"] is True and shadowed["intent"] == "card_delivery_estimate"
    assert alone["read_with_earlier"] is False and alone["intent"] == "card_arrival"


def test_the_azure_endpoint_reads_a_users_follow_up_after_their_last_question(follow_app: Any) -> None:
    from serving.azure_qa import qna_id
    from tests.serving.test_api import AZURE

    app = follow_app(review_audit_rate=0.0)
    client = app.test_client()
    first = client.post(AZURE, json={"question": "where is my card", "userId": "user-7"}).get_json()
    assert first["answers"][0]["id"] == qna_id("card_arrival")
    follow = client.post(AZURE, json={"question": FOLLOW_UP, "userId": "user-7"}).get_json()
    assert follow["answers"][0]["id"] == qna_id("card_delivery_estimate")
    assert turns(app)[-1].context_text == "where is my card"
    # without a userId every request is a conversation of its own
    alone = client.post(AZURE, json={"question": FOLLOW_UP}).get_json()
    # alone, a "did you mean" (Azure's several answers): card delivery or transfer times
    assert [a["id"] for a in alone["answers"]] == [
        qna_id("card_delivery_estimate"),
        qna_id("transfer_timing"),
    ]
    assert follow["answers"][0]["confidenceScore"] > alone["answers"][0]["confidenceScore"]
    assert turns(app)[-1].context_text is None


def test_operators_try_a_follow_up_after_a_question(follow_app: Any) -> None:
    app = follow_app()
    client = app.test_client()
    add_user(app, "omar", "operator")
    login(client, "omar")

    def tried(**query: str) -> str:
        response = client.get("/operator/knowledge/try?" + urlencode(query))
        assert response.status_code == 200
        return response.get_data(as_text=True)

    page = tried(q=FOLLOW_UP, after="Hi! where is my card")
    assert 'id="read-with-production"' in page
    assert "read together with “where is my card”, its answer (card_arrival) left out" in page
    assert 'data-arm="production" data-status="answered"' in page and ">card_delivery_estimate</a>" in page
    alone = tried(q=FOLLOW_UP)
    assert "read-with" not in alone and 'data-status="answered"' not in alone
    standing = tried(q="how do i change my pin", after="where is my card")
    assert "the message does not refer back to anything" in standing
    after_rate = tried(q=FOLLOW_UP, after="what exchange rate do you use")
    assert "the reading with the question before was no surer" in after_rate
    assert turns(app) == []  # nothing is logged


def test_trying_a_follow_up_says_when_follow_ups_are_off(follow_app: Any) -> None:
    app = follow_app(follow_ups=False)
    client = app.test_client()
    add_user(app, "omar", "operator")
    login(client, "omar")
    query = urlencode({"q": FOLLOW_UP, "after": "where is my card"})
    page = client.get(f"/operator/knowledge/try?{query}").get_data(as_text=True)
    assert "follow-ups are off" in page and "read-with" not in page
