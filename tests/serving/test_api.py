"""HTTP API: chat, feedback, sessions, handoff, Rasa channel, health, metrics, errors, limits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import Turn


def chat(client: Any, message: Any, **extra: Any) -> Any:
    return client.post("/api/v1/chat", json={"message": message, **extra})


def turns(app: Any) -> list[Turn]:
    with app.extensions["helploop"].database.session() as session:
        return list(session.scalars(select(Turn).order_by(Turn.id)))


def test_chat_answers_and_logs_the_turn_before_replying(client: Any, app: Any) -> None:
    response = chat(client, "when will my card arrive")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "session_id",
        "turn_id",
        "rated_turn_id",
        "status",
        "answer",
        "intent",
        "confidence",
        "suggestions",
        "asked_again",
        "model_version",
        "team_back",
    }
    assert body["team_back"] is None  # answered: no person, no team hours
    assert body["status"] == "answered" and body["intent"] == "card_arrival" and body["rated_turn_id"] is None
    assert body["asked_again"] is False
    assert body["answer"] == "Cards arrive in **5–7 working days**."
    assert body["suggestions"] == [{"intent": "change_pin", "title": "Change my PIN"}]
    logged = turns(app)
    assert len(logged) == 1
    turn = logged[0]
    assert turn.id == body["turn_id"] and turn.conversation_id == body["session_id"]
    assert turn.user_text == "when will my card arrive" and turn.status == "answered"
    assert turn.model_version == body["model_version"] and turn.latency_ms > 0
    assert turn.candidates[0]["intent"] == "card_arrival"
    assert set(turn.member_scores) == {"logistic_head", "nearest_neighbour", "char_ngram"}
    assert turn.served_by == "production"
    again = chat(client, "how do i change my pin", session_id=body["session_id"]).get_json()
    assert again["session_id"] == body["session_id"]


def test_uncertain_message_is_handed_off_and_suggestion_payload_answers(client: Any) -> None:
    body = chat(client, "qwerty zxcvb plonk").get_json()
    assert body["status"] in {"handoff", "clarify"}
    assert body["intent"] is None
    chosen = chat(client, "/exchange_rate", session_id=body["session_id"]).get_json()
    assert chosen["status"] == "answered" and chosen["intent"] == "exchange_rate"
    assert chosen["answer"] == "We use the interbank rate." and chosen["confidence"] == 1.0


def test_a_thumbs_down_on_a_clicked_choice_reviews_the_question_that_offered_it(make_app: Any) -> None:
    """A clicked "did you mean" chip is answered as "/intent": its thumbs-down puts the customer's question
    into review, never "/change_pin"; a follow-up chip's thumbs-down is stored (it counts against that
    intent's answer) but is no question for reviewers."""
    from core.models import ReviewItem, ReviewItemTurn

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    asked = chat(client, "card pin").get_json()
    assert asked["status"] == "clarify" and "change_pin" in [s["intent"] for s in asked["suggestions"]]
    picked = chat(client, "/change_pin", session_id=asked["session_id"]).get_json()
    answered = chat(client, "when will my card arrive").get_json()
    assert [s["intent"] for s in answered["suggestions"]] == ["change_pin"]
    follow_up = chat(client, "/change_pin", session_id=answered["session_id"]).get_json()
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        before = dict(session.execute(select(ReviewItemTurn.turn_id, ReviewItemTurn.reason)).all())
    assert asked["turn_id"] in before and answered["turn_id"] not in before  # "did you mean": in review
    for reply in (picked, follow_up):
        feedback = client.post("/api/v1/feedback", json={"turn_id": reply["turn_id"], "helpful": False})
        assert feedback.status_code == 200
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        after = dict(session.execute(select(ReviewItemTurn.turn_id, ReviewItemTurn.reason)).all())
        texts = set(session.scalars(select(ReviewItem.text)))
        assert session.get(Turn, follow_up["turn_id"]).helpful is False
    assert "thumbs_down" in after[asked["turn_id"]] and set(after) == set(before)
    assert not any(t.startswith("/") for t in texts) and "card pin" in texts


def test_what_should_i_do_now_with_no_question_before_it_gets_the_help_reply(make_app: Any) -> None:
    """ "What should I do now?" as the first message was handed over (the demo declined it as off topic): with
    no question before it, it gets the help reply; after a question it is read with that question."""
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    first = chat(client, "what should I do now?").get_json()
    assert (first["status"], first["answer"]) == ("small_talk", settings.small_talk_help)
    asked = chat(client, "when will my card arrive", session_id=first["session_id"]).get_json()
    after = chat(client, "what should I do now?", session_id=asked["session_id"]).get_json()
    assert after["status"] != "small_talk"  # a follow-up of the card question


def test_a_did_you_mean_answered_by_typing_is_the_choice(make_app: Any) -> None:
    """ "The second one" or a choice's title typed after "did you mean" answers that choice as its chip would
    (the choice is recorded on the question; a thumbs-down on it reviews the question, never the typed words);
    "none of these" passes the conversation to a person and is no review item; after an answer "the first
    one" is a message like any other."""
    from core.models import ReviewItem, ReviewItemTurn

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    asked = chat(client, "card pin").get_json()
    shown = [s["intent"] for s in asked["suggestions"]]
    assert asked["status"] == "clarify" and len(shown) >= 2
    sid = asked["session_id"]
    second = chat(client, "the second one", session_id=sid).get_json()
    assert (second["status"], second["intent"], second["confidence"]) == ("answered", shown[1], 1.0)
    assert (
        client.post("/api/v1/feedback", json={"turn_id": second["turn_id"], "helpful": False}).status_code
        == 200
    )
    again = chat(client, "card pin").get_json()
    titled = chat(client, asked["suggestions"][0]["title"].lower(), session_id=again["session_id"]).get_json()
    assert titled["intent"] == shown[0]
    once_more = chat(client, "card pin").get_json()
    declined = chat(client, "none of these", session_id=once_more["session_id"]).get_json()
    assert declined["status"] == "handoff" and declined["intent"] is None and declined["suggestions"] == []
    assert declined["answer"] in {
        helploop.settings.handoff_requested_message,
        helploop.settings.handoff_offline_message,
    }
    after_answer = chat(client, "the first one", session_id=second["session_id"]).get_json()
    assert after_answer["status"] != "answered" or after_answer["confidence"] < 1.0  # read by the model
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        logged = {t.id: t for t in session.scalars(select(Turn))}
        assert logged[asked["turn_id"]].chosen_intent == shown[1]
        assert logged[second["turn_id"]].served_by == "suggestion"
        assert logged[second["turn_id"]].user_text == "the second one"  # as typed
        assert logged[declined["turn_id"]].status == "asked_for_person"
        assert logged[once_more["turn_id"]].declined_at is not None  # remembered on the "did you mean"
        assert logged[asked["turn_id"]].declined_at is None
        declined_item = session.scalar(
            select(ReviewItemTurn.item_id).where(ReviewItemTurn.turn_id == once_more["turn_id"])
        )
        reviewed = dict(session.execute(select(ReviewItemTurn.turn_id, ReviewItemTurn.reason)).all())
        texts = set(session.scalars(select(ReviewItem.text)))
    assert "thumbs_down" in reviewed[asked["turn_id"]]
    assert not {second["turn_id"], titled["turn_id"], declined["turn_id"]} & set(reviewed)
    assert not {"the second one", "none of these"} & texts
    from tests.serving.test_admin import add_user, login

    add_user(app, "omar", "operator")
    login(client, "omar")
    page = client.get(f"/operator/conversations/{sid}").get_data(as_text=True)
    assert f'the second one <span class="muted">(typed: picked {shown[1]})</span>' in page
    overview = client.get("/operator/").get_data(as_text=True)
    assert 'Customers answered "none of these" <strong>1</strong> time (passed to a person)' in overview
    item_page = client.get(f"/review/items/{declined_item}").get_data(as_text=True)
    assert 'id="customer-declined"' in item_page and "1 customer answered “none of these”" in item_page
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_clarify_choices_total{rank="none"} 1.0' in metrics


def test_with_typed_choices_off_the_model_reads_the_second_one(make_app: Any) -> None:
    off = make_app(ratelimit_enabled=False, typed_choices=False).test_client()
    plain = chat(off, "card pin").get_json()
    read = chat(off, "the second one", session_id=plain["session_id"]).get_json()
    assert read["confidence"] < 1.0 and read["intent"] != plain["suggestions"][1]["intent"]


@pytest.mark.parametrize(
    ("payload", "status", "code", "field"),
    [
        ({}, 400, "missing_field", "message"),
        ({"message": "   "}, 400, "empty_field", "message"),
        ({"message": "x" * 1001}, 400, "too_long", "message"),
        ({"message": 42}, 400, "invalid_type", "message"),
        ({"message": "hi", "session_id": "bad id!"}, 400, "invalid_session_id", "session_id"),
        ({"message": "hi", "session_id": "0123456789abcdef"}, 404, "unknown_session", "session_id"),
        (["message"], 400, "invalid_body", None),
    ],
)
def test_chat_rejects_bad_input_with_stable_errors(
    client: Any, app: Any, payload: Any, status: int, code: str, field: str | None
) -> None:
    response = client.post("/api/v1/chat", json=payload)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    assert error.get("field") == field
    assert turns(app) == []  # nothing half-written


def test_non_json_bad_json_and_oversized_bodies(client: Any, app: Any) -> None:
    response = client.post(
        "/api/v1/chat", data="message=hi", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415 and response.get_json()["error"]["code"] == "unsupported_media_type"
    response = client.post("/api/v1/chat", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_json"
    response = client.post(
        "/api/v1/chat", data=json.dumps({"message": "x" * 70_000}), content_type="application/json"
    )
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"
    response = client.get("/api/v1/chat")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"
    assert client.get("/api/v1/nothing").get_json()["error"]["code"] == "not_found"
    # Text no database can store (PostgreSQL refuses NUL; a lone surrogate is not UTF-8): a 400 naming
    # the field, before anything is written (it used to be a 500 at the write).
    for raw, problem in (('"hi\\u0000there"', "NUL character"), ('"card \\ud800"', "lone surrogate")):
        response = client.post(
            "/api/v1/chat", data='{"message": ' + raw + "}", content_type="application/json"
        )
        error = response.get_json()["error"]
        assert response.status_code == 400 and (error["code"], error["field"]) == ("invalid_text", "message")
        assert problem in error["message"]
    nested = client.post(
        "/language/:query-knowledgebases",
        data='{"question": "hi", "context": {"previousUserQuery": "x\\u0000"}}',
        content_type="application/json",
    )
    assert nested.status_code == 400 and nested.get_json()["error"]["field"] == "context.previousUserQuery"
    deep = client.post("/api/v1/chat", data="[" * 20_000 + "]" * 20_000, content_type="application/json")
    assert deep.status_code == 400 and deep.get_json()["error"]["code"] == "invalid_json"  # was a 500
    nested = client.post(
        "/api/v1/chat",
        data='{"message": "hi", "extra": ' + "[" * 900 + '"\\u0000"' + "]" * 900 + "}",
        content_type="application/json",
    )
    assert nested.status_code == 400 and nested.get_json()["error"]["field"].startswith("extra[0][0]")
    query = client.get("/api/v1/sessions/0123456789abcdef?q=%00")
    assert query.status_code == 400 and query.get_json()["error"]["field"] == "q"
    assert turns(app) == []


def test_feedback_transcript_and_handoff(client: Any, app: Any) -> None:
    body = chat(client, "close my account").get_json()
    response = client.post(
        "/api/v1/feedback", json={"turn_id": body["turn_id"], "helpful": False, "comment": "not what I asked"}
    )
    assert response.status_code == 200
    stored = turns(app)[0]
    assert stored.helpful is False and stored.feedback_comment == "not what I asked" and stored.feedback_at
    assert client.post("/api/v1/feedback", json={"turn_id": 99999, "helpful": True}).status_code == 404
    bad = client.post("/api/v1/feedback", json={"turn_id": body["turn_id"], "helpful": "yes"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "helpful"

    transcript = client.get(f"/api/v1/sessions/{body['session_id']}").get_json()
    assert [t["message"] for t in transcript["turns"]] == ["close my account"]
    assert transcript["turns"][0]["helpful"] is False and transcript["handoff_requested"] is False
    handoff = client.post(f"/api/v1/sessions/{body['session_id']}/handoff")
    assert handoff.status_code == 200 and handoff.get_json()["handoff_requested"] is True
    assert client.get(f"/api/v1/sessions/{body['session_id']}").get_json()["handoff_requested"] is True
    assert client.get("/api/v1/sessions/0123456789abcdef").status_code == 404
    assert client.post("/api/v1/sessions/0123456789abcdef/handoff").status_code == 404


@pytest.mark.parametrize(
    ("contact", "ok"),
    [
        ("jo.smith@example.co.uk", True),
        ("+44 20 7946 0958", True),
        ("(020) 7946-0958", True),
        ("call me maybe", False),
        ("12345", False),  # too short for a phone number
        ("jo@localhost", False),
        ("+1 234 567 890 123 456 789", False),  # too many digits
    ],
)
def test_contact_after_a_handoff(client: Any, app: Any, contact: str, ok: bool) -> None:
    from core.models import Conversation

    session_id = chat(client, "close my account").get_json()["session_id"]
    assert client.get(f"/api/v1/sessions/{session_id}").get_json()["contact_left"] is False
    response = client.post(f"/api/v1/sessions/{session_id}/contact", json={"contact": f"  {contact} "})
    with app.extensions["helploop"].database.session() as session:
        stored = session.get(Conversation, session_id)
        left, asked = stored.contact, stored.handoff_requested_at
    if ok:
        assert response.status_code == 200 and "get back to you" in response.get_json()["message"]
        assert left == contact and asked is not None  # leaving a contact asks for a person
        assert client.get(f"/api/v1/sessions/{session_id}").get_json()["contact_left"] is True
    else:
        error = response.get_json()["error"]
        assert response.status_code == 400 and (error["code"], error["field"]) == (
            "invalid_contact",
            "contact",
        )
        assert left is None and asked is None  # nothing stored


def test_contact_errors(client: Any) -> None:
    session_id = chat(client, "close my account").get_json()["session_id"]
    missing = client.post(f"/api/v1/sessions/{session_id}/contact", json={})
    assert missing.status_code == 400 and missing.get_json()["error"]["code"] == "missing_field"
    long = client.post(f"/api/v1/sessions/{session_id}/contact", json={"contact": "x" * 201 + "@example.com"})
    assert long.status_code == 400 and long.get_json()["error"]["code"] == "too_long"
    unknown = client.post("/api/v1/sessions/0123456789abcdef/contact", json={"contact": "jo@example.com"})
    assert unknown.status_code == 404
    assert (
        client.post("/api/v1/sessions/bad id/contact", json={"contact": "jo@example.com"}).status_code == 400
    )


def test_rasa_rest_webhook_and_parse(client: Any, app: Any) -> None:
    response = client.post(
        "/webhooks/rest/webhook", json={"sender": "user-42", "message": "where is my card"}
    )
    assert response.status_code == 200
    messages = response.get_json()
    assert messages[0]["recipient_id"] == "user-42"
    assert messages[0]["text"] == "Cards arrive in **5–7 working days**."
    assert messages[0]["buttons"] == [{"title": "Change my PIN", "payload": "/change_pin"}]
    follow = client.post("/webhooks/rest/webhook", json={"sender": "user-42", "message": "/change_pin"})
    assert follow.get_json()[0]["text"].startswith("Change it at any ATM.")
    logged = turns(app)
    assert len(logged) == 2 and logged[0].conversation_id == logged[1].conversation_id
    parsed = client.post("/model/parse", json={"text": "exchange rate today"}).get_json()
    assert parsed["text"] == "exchange rate today" and parsed["entities"] == []
    assert parsed["intent"]["name"] == "exchange_rate" and 0 < parsed["intent"]["confidence"] <= 1
    assert [r["name"] for r in parsed["intent_ranking"]][0] == "exchange_rate"
    assert len(turns(app)) == 2  # parse is NLU only, not a conversation turn
    assert client.post("/model/parse", json={}).get_json()["error"]["field"] == "text"
    # A message off the knowledge base's topic: declined, with a button that asks for a person.
    off = client.post(
        "/webhooks/rest/webhook", json={"sender": "user-7", "message": "xylophone aardvark telescope"}
    )
    declined = off.get_json()[0]
    assert declined["text"] == app.extensions["helploop"].settings.off_topic_message
    assert declined["buttons"] == [{"title": "Talk to a person", "payload": "Talk to a person"}]
    asked = client.post(
        "/webhooks/rest/webhook", json={"sender": "user-7", "message": declined["buttons"][0]["payload"]}
    )
    assert asked.get_json()[0]["text"] == app.extensions["helploop"].settings.handoff_offline_message
    assert [t.status for t in turns(app)[-2:]] == ["off_topic", "asked_for_person"]


AZURE = "/language/:query-knowledgebases?projectName=bank&deploymentName=production&api-version=2021-10-01"


def test_azure_question_answering_runtime_answers_follows_prompts_and_hands_over(
    client: Any, app: Any
) -> None:
    """An Azure question answering client pointed at HelpLoop: the answer with its prompts, a clicked
    prompt by qnaId, "did you mean" as several answers, a hand-over as Azure's no-match, errors as JSON."""
    from serving.azure_qa import NO_ANSWER_ID, qna_id
    from tests.serving.conftest import ANSWERS

    headers = {"Ocp-Apim-Subscription-Key": "ignored"}
    body = {"question": "when will my card arrive", "userId": "user-42", "top": 3}
    response = client.post(AZURE, json=body, headers=headers)
    assert response.status_code == 200
    answers = response.get_json()["answers"]
    first = answers[0]
    assert first["id"] == qna_id("card_arrival") and first["answer"] == ANSWERS["card_arrival"].answer
    assert first["questions"] == ["Where is my card?"] and first["metadata"] == {"intent": "card_arrival"}
    assert first["dialog"]["prompts"] == [
        {"displayOrder": 0, "qnaId": qna_id("change_pin"), "displayText": "Change my PIN"}
    ]
    assert 0.5 < first["confidenceScore"] <= 1.0 and 1 <= len(answers) <= 3
    assert [a["confidenceScore"] for a in answers] == sorted(
        (a["confidenceScore"] for a in answers), reverse=True
    )
    # The user clicks the prompt: Azure clients send its qnaId; the answer comes without guessing.
    clicked = client.post(AZURE, json={"qnaId": qna_id("change_pin"), "userId": "user-42"}).get_json()
    assert [(a["id"], a["confidenceScore"]) for a in clicked["answers"]] == [(qna_id("change_pin"), 1.0)]
    assert clicked["answers"][0]["answer"] == ANSWERS["change_pin"].answer
    logged = turns(app)
    assert [t.user_text for t in logged] == ["when will my card arrive", "/change_pin"]
    assert logged[0].conversation_id == logged[1].conversation_id == "azure-user-42"
    # A prompt typed (or sent as text) after the QnA that offered it, as Azure's multi-turn context: the
    # follow-up itself. Without the context, or after a QnA that does not offer it, it is any question.
    context = {"previousQnaId": qna_id("card_arrival"), "previousUserQuery": "when will my card arrive"}
    typed = {"question": " change my pin? ", "context": context, "userId": "user-42"}
    followed = client.post(AZURE, json=typed).get_json()["answers"]
    assert [(a["id"], a["confidenceScore"]) for a in followed] == [(qna_id("change_pin"), 1.0)]
    assert turns(app)[-1].user_text == "/change_pin"
    elsewhere = {**typed, "context": {"previousQnaId": qna_id("change_pin")}}
    client.post(AZURE, json=elsewhere)
    assert turns(app)[-1].user_text == " change my pin? ".strip()
    # Unsure: the "did you mean" choices, each as an answer.
    unsure = client.post(AZURE, json={"question": "card pin"}).get_json()["answers"]
    assert len(unsure) >= 2 and qna_id("change_pin") in [a["id"] for a in unsure]
    # Asking for a person: Azure's no-match result, carrying HelpLoop's hand-over message.
    person = client.post(AZURE, json={"question": "can I talk to a human"}).get_json()["answers"]
    handoff = app.extensions["helploop"].settings.handoff_offline_message
    assert [(a["id"], a["confidenceScore"], a["answer"]) for a in person] == [(NO_ANSWER_ID, 0.0, handoff)]
    # A threshold nothing reaches gives the no-match result too.
    strict = client.post(AZURE, json={"question": "card pin", "confidenceScoreThreshold": 1.0}).get_json()
    assert [a["id"] for a in strict["answers"]] == [NO_ANSWER_ID]
    for bad, field in (
        ({"question": ""}, "question"),
        ({}, "question"),
        ({"question": "hi", "top": 0}, "top"),
        ({"question": "hi", "top": "3"}, "top"),
        ({"question": "hi", "confidenceScoreThreshold": 2}, "confidenceScoreThreshold"),
        ({"question": "hi", "context": "card_arrival"}, "context"),
        ({"question": "hi", "context": {"previousQnaId": "7"}}, "context.previousQnaId"),
    ):
        error = client.post(AZURE, json=bad)
        assert error.status_code == 400 and error.get_json()["error"]["field"] == field
    unknown = client.post(AZURE, json={"qnaId": 12345})
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "unknown_qna"
    assert (
        len(turns(app)) == 7
    )  # five questions, the click and the typed prompt; refused requests log nothing


def test_health_readiness_and_metrics(make_app: Any) -> None:
    cold = make_app(register=False, load=False).test_client()
    assert cold.get("/healthz").status_code == 200
    ready = cold.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["model"] == "not loaded"
    loading = cold.post("/api/v1/chat", json={"message": "hi"})
    assert loading.status_code == 503 and loading.get_json()["error"]["code"] == "model_unavailable"
    assert loading.get_json()["error"]["retry_after"] == 5  # when to ask again (the widget does, by itself)
    assert int(loading.headers["Retry-After"]) >= 5  # the rate limiter's window end, when that is later

    client = make_app().test_client()
    assert client.get("/readyz").status_code == 200
    chat(client, "where is my card")
    chat(client, "blorp fnord")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_turns_total{arm="production",status="answered"} 1.0' in metrics
    assert "helploop_request_latency_seconds_bucket" in metrics and 'endpoint="/api/v1/chat"' in metrics
    assert 'helploop_model_info{arm="production"' in metrics
    # Work waiting for people: the unknown question was routed to review (declined as off topic: nobody is
    # asked to take it over), the customer asking for a person waits for one.
    client.post("/api/v1/chat", json={"message": "qqq zzz vvv"})
    client.post("/api/v1/chat", json={"message": "can I talk to a human"})
    app = client.application
    assert app.extensions["helploop"].router.drain(10)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'helploop_review_items\{status="pending"\} [1-9]', metrics)
    assert 'helploop_review_items{status="escalated"} 0.0' in metrics
    assert re.search(r"helploop_handoffs_waiting [1-9]", metrics)
    assert "helploop_suggestions_open 0.0" in metrics and "helploop_jobs" in metrics


def test_off_topic_messages_are_declined_not_handed_over(make_app: Any) -> None:
    """A message like no example (no word of the toy knowledge base) is declined with the off-topic line: no
    answer, no choices, nobody on the team asked to take it over (the conversation stays out of the handoff
    inbox), counted; asking for a person afterwards hands it over as ever; a known question is answered."""
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    engine = app.extensions["helploop"].models.state.production
    assert engine.familiarity_floor is not None and engine.predict("xylophone aardvark telescope").unfamiliar
    off = chat(client, "xylophone aardvark telescope").get_json()
    assert off["status"] == "off_topic" and off["suggestions"] == [] and off["intent"] is None
    assert off["answer"] == settings.off_topic_message != settings.handoff_message
    session_id = off["session_id"]
    resumed = client.get(f"/api/v1/sessions/{session_id}").get_json()
    assert resumed["waiting_for_person"] is False and resumed["turns"][0]["status"] == "off_topic"
    assert re.search(r"helploop_handoffs_waiting 0", client.get("/metrics").get_data(as_text=True))
    # Nothing for the team yet: the inbox (a familiar question the bot hands over would be in it) is empty.
    from tests.serving.test_admin import add_user, login

    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    assert operator.get("/operator/conversations/inbox.json").get_json()["waiting"] == 0
    asked = chat(client, "can I talk to a human", session_id=session_id).get_json()
    assert asked["status"] == "handoff" and asked["answer"] != settings.off_topic_message
    assert client.get(f"/api/v1/sessions/{session_id}").get_json()["waiting_for_person"] is True
    assert operator.get("/operator/conversations/inbox.json").get_json()["waiting"] == 1
    chat(client, "where is my card")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_off_topic_total{arm="production"} 1.0' in metrics
    assert 'helploop_turns_total{arm="production",status="off_topic"} 1.0' in metrics
    logged = turns(app)
    assert [(t.status, t.off_topic, t.answer == settings.off_topic_message) for t in logged] == [
        ("off_topic", True, True),
        ("asked_for_person", False, False),
        ("answered", False, False),
    ]
    # It reaches review for its own reason, which the items page filters by (to settle spam in bulk).
    assert app.extensions["helploop"].router.drain(10)
    listed = operator.get("/review/items?status=pending&reason=off_topic").get_data(as_text=True)
    assert "xylophone aardvark telescope" in listed and "where is my card" not in listed
    # The operator reading the conversation sees why the bot declined it.
    page = operator.get(f"/operator/conversations/{session_id}").get_data(as_text=True)
    assert page.count('class="off-topic"') == 1 and "declined with the off-topic reply" in page
    # The overview counts it among the questions, its own share (the request for a person beside them), as
    # does the 30-day trend.
    overview = operator.get("/operator/").get_data(as_text=True)
    assert "<h2>Questions (2)</h2>" in overview
    assert re.search(r">off topic</text>\s*<rect[^>]*></rect>\s*<text[^>]*>1 \(50\.0%\)</text>", overview)
    assert re.search(r"2 turns, 1 answered, 0 clarify \(0 picked\), 0 handoff, 1 off topic", overview)


def test_a_message_of_two_questions_answers_one_and_offers_the_other(make_app: Any) -> None:
    """Read sentence by sentence as well (bot.multi_question): the answer is the whole message's, and the
    other question's intent is the first chip, logged with the turn."""
    message = "My card has not arrived and my card is still not delivered. Also, how do I close my account?"
    app = make_app(ratelimit_enabled=False)
    reply = chat(app.test_client(), message).get_json()
    assert (reply["status"], reply["intent"]) == ("answered", "card_arrival")
    assert reply["suggestions"][0]["intent"] == "terminate_account"
    assert turns(app)[-1].suggested[0] == "terminate_account"


def test_with_multi_questions_off_a_message_is_read_whole_only(make_app: Any) -> None:
    message = "My card has not arrived and my card is still not delivered. Also, how do I close my account?"
    plain = make_app(ratelimit_enabled=False, multi_questions=False)
    alone = chat(plain.test_client(), message).get_json()
    assert (alone["status"], alone["intent"]) == ("answered", "card_arrival")
    assert "terminate_account" not in [s["intent"] for s in alone["suggestions"]]


def test_openapi_documents_every_api_route_and_docs_page_renders(app: Any, client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = set(spec["paths"])
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/api/", "/webhooks/", "/model/", "/language/")):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <int:job_id> -> {job_id}
            assert path in documented, f"{rule.rule} missing from /openapi.json"
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert method.lower() in spec["paths"][path], (
                    f"{method} {rule.rule} missing from /openapi.json"
                )
    page = client.get("/docs").get_data(as_text=True)
    assert "/api/v1/chat" in page and "/model/parse" in page


def test_demo_page_and_widget_assets(client: Any) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'src="/widget.js"' in page and "data-helploop-url" in page
    with client.get("/widget.js") as script:
        assert script.status_code == 200 and script.mimetype == "application/javascript"
        assert "renderMarkdown" in script.get_data(as_text=True)
    with client.get("/widget.css") as style:
        assert style.mimetype == "text/css"
    # The site's icon, linked from every page (so browsers do not log a 404 for /favicon.ico).
    linked = re.search(r'<link rel="icon" href="([^"]+)"', page)
    assert linked is not None
    for path in {linked.group(1), "/favicon.svg", "/favicon.ico"}:
        with client.get(path) as icon:
            assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
            assert icon.get_data(as_text=True).startswith("<svg")


def test_cors_allows_configured_origins(make_app: Any) -> None:
    # written with a trailing "/" and capitals, as people copy a site's address: it still matches what
    # browsers send (it used to be compared as typed, so such a setting let no site in)
    client = make_app(widget_origins="https://Shop.example/, https://help.example").test_client()
    allowed = client.post(
        "/api/v1/chat", json={"message": "where is my card"}, headers={"Origin": "https://shop.example"}
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Origin" in allowed.headers["Vary"]
    other = client.post(
        "/api/v1/chat", json={"message": "where is my card"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_refused_site_is_counted_and_named_once_in_the_log(make_app: Any, caplog: Any) -> None:
    """The browser stops the widget on a site the setting leaves out without telling anyone: the log names
    the site once per process and a counter counts every call; this app's own pages are not refused."""
    client = make_app(widget_origins="https://shop.example").test_client()
    with caplog.at_level("WARNING", logger="serving.api"):
        for origin in ("https://www.shop.example", "https://www.shop.example", "http://localhost"):
            client.options("/api/v1/chat", headers={"Origin": origin})
    named = [
        r.getMessage() for r in caplog.records if "HELPLOOP_WIDGET_ORIGINS does not allow" in r.getMessage()
    ]
    assert len(named) == 1 and "'https://www.shop.example'" in named[0]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "helploop_widget_refused_origins_total 2.0" in metrics


def test_rate_limit_answers_429_as_json(make_app: Any) -> None:
    client = make_app(chat_rate_limit="3/minute").test_client()
    codes = [chat(client, "where is my card").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    error = chat(client, "where is my card").get_json()["error"]
    assert error["code"] == "rate_limited"


def test_rate_limit_in_redis(make_app: Any) -> None:
    import uuid

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    client = make_app(
        chat_rate_limit="2/minute",
        ratelimit_storage_url="redis://127.0.0.1:6379/15",
        RATELIMIT_KEY_PREFIX=f"helploop-test-{uuid.uuid4().hex}",
    ).test_client()
    codes = [chat(client, "where is my card").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    keys = redis.Redis(host="127.0.0.1", port=6379, db=15).keys("*helploop-test-*")
    assert keys, "the limiter did not store its counters in Redis"


def test_uncertain_and_thumbs_down_turns_become_review_items(client: Any, app: Any) -> None:
    from core.models import ReviewItem, ReviewItemTurn

    helploop = app.extensions["helploop"]
    unsure = chat(client, "qwerty zxcvb plonk, email me at someone@example.com").get_json()
    sure = chat(client, "when will my card arrive").get_json()
    assert sure["status"] == "answered"
    client.post("/api/v1/feedback", json={"turn_id": sure["turn_id"], "helpful": False})
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        items = session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all()
        links = {link.turn_id: link.reason.split(",") for link in session.scalars(select(ReviewItemTurn))}
        assert unsure["status"] in links[unsure["turn_id"]]
        assert "thumbs_down" in links[sure["turn_id"]]
        texts = {item.text for item in items}
        assert "qwerty zxcvb plonk, email me at [EMAIL]" in texts  # redacted before review
        assert all(item.embedding for item in items)


def test_card_numbers_and_secrets_are_never_stored_even_in_the_turn_log(client: Any, app: Any) -> None:
    """PCI DSS: no card security code or PIN kept, card numbers unreadable where stored; a password is no
    operator's business. The rest stays as typed for operators (the e-mail here), redacted for reviewers."""
    said = "card 4111 1111 1111 1111 declined, pin 1234, cvv 123, password: hunter2, mail jo@example.com"
    body = chat(client, said).get_json()
    client.post(
        "/api/v1/feedback", json={"turn_id": body["turn_id"], "helpful": False, "comment": "pin 9876"}
    )
    with app.extensions["helploop"].database.session() as session:
        turn = session.get(Turn, body["turn_id"])
        assert turn.user_text == (
            "card [CARD_NUMBER] declined, pin [SECRET], cvv [SECRET], password: [SECRET], mail jo@example.com"
        )
        assert turn.feedback_comment == "pin [SECRET]"
        assert (
            session.scalar(select(func.count()).select_from(Turn).where(Turn.user_text.contains("4111"))) == 0
        )


def test_confident_turns_join_a_similar_pending_item_and_never_open_one(make_app: Any) -> None:
    from core.models import ReviewItem, ReviewItemTurn

    app = make_app(review_audit_rate=0.0)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    first = chat(client, "when will my card arrive").get_json()
    assert first["status"] == "answered"
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == 0  # a confident turn alone
    # The user was not happy: that turn is now in review ...
    client.post("/api/v1/feedback", json={"turn_id": first["turn_id"], "helpful": False})
    assert helploop.router.drain(10)
    # ... and the same question, answered confidently again, joins that item instead of being lost.
    again = chat(client, "when will my card arrive").get_json()
    assert again["status"] == "answered"
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        items = session.scalars(select(ReviewItem)).all()
        assert len(items) == 1 and items[0].cluster_size == 2
        links = {link.turn_id: link.reason for link in session.scalars(select(ReviewItemTurn))}
        assert links == {first["turn_id"]: "thumbs_down", again["turn_id"]: "similar"}


def log_card_turns(database: Any, rows: list[tuple[str, str]]) -> list[int]:
    """Log (text, status) turns about card arrival in one conversation; returns their ids."""
    from core.registry import get_or_create_conversation, log_turn

    with database.session() as session:
        conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
        ids = []
        for text, status in rows:
            answered = status == "answered"
            turn = log_turn(
                session,
                conversation_id=conversation.id,
                user_text=text,
                status=status,
                intent="card_arrival" if answered else None,
                answer="",
                confidence=0.9 if answered else 0.3,
                candidates=[{"intent": "card_arrival", "probability": 0.3, "title": "Card arrival"}],
                member_scores={},
                model_version="v1",
                latency_ms=1.0,
            )
            ids.append(turn.id)
        session.commit()
    return ids


def test_a_typed_request_for_a_person_is_the_button_not_a_guess(make_app: Any) -> None:
    """A typed "can I talk to a human?" gets the reply of the "Talk to a person" button (offline here: no
    operator has a page open), opens the handoff inbox entry, logs the model's candidates, and is no review
    item; a deployment adds its own phrasing. The log says the customer asked (not that the bot gave up): the
    conversation list shows "asked" without "bot ×1", and the overview counts it beside the questions."""
    from core.models import Conversation, ReviewItemTurn
    from tests.serving.test_admin import add_user, login

    app = make_app(ratelimit_enabled=False, handoff_request_pattern=r"\bmit einem menschen\b")
    client = app.test_client()
    helploop = app.extensions["helploop"]
    first = chat(client, "when will my card arrive").get_json()
    asked = chat(client, "can I talk to a real person please?", session_id=first["session_id"]).get_json()
    assert asked["status"] == "handoff" and asked["intent"] is None and asked["suggestions"] == []
    assert asked["answer"] == helploop.settings.handoff_offline_message
    german = chat(client, "Ich will mit einem Menschen sprechen").get_json()
    assert german["status"] == "handoff"
    assert german["answer"] == helploop.settings.handoff_offline_message
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        logged = {t.id: t for t in session.scalars(select(Turn))}
        assert logged[asked["turn_id"]].status == "asked_for_person" and logged[asked["turn_id"]].candidates
        assert logged[asked["turn_id"]].answer == helploop.settings.handoff_offline_message
        for reply in (asked, german):
            assert session.get(Conversation, reply["session_id"]).handoff_requested_at is not None
        routed = set(session.scalars(select(ReviewItemTurn.turn_id)))
        assert asked["turn_id"] not in routed and german["turn_id"] not in routed
    history = client.get(f"/api/v1/sessions/{first['session_id']}").get_json()
    assert history["handoff_requested"] is True
    assert [t["status"] for t in history["turns"]] == ["answered", "handoff"]  # as the chat replied
    add_user(app, "omar", "operator")
    login(client, "omar")
    listing = client.get("/operator/conversations").get_data(as_text=True)
    row = listing[listing.index(first["session_id"]) :].split("</tr>")[0]
    assert "asked" in row and "bot ×" not in row
    overview = client.get("/operator/").get_data(as_text=True)
    assert "Questions (1)" in overview and "and 2 messages asking for a person" in overview
    transcript = client.get(f"/operator/conversations/{first['session_id']}").get_data(as_text=True)
    assert "(asked for a person, confidence" in transcript
    # A question about paying a person is still a question.
    assert chat(client, "I want to transfer money to another person").get_json()["answer"] not in {
        helploop.settings.handoff_offline_message,
        helploop.settings.handoff_requested_message,
    }


def test_a_typed_request_for_a_person_can_be_left_to_the_model(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, handoff_requests=False)
    settings = app.extensions["helploop"].settings
    plain = chat(app.test_client(), "can I talk to a real person please?").get_json()
    assert plain["answer"] not in {settings.handoff_offline_message, settings.handoff_requested_message}


def test_a_handoff_request_pattern_that_is_no_regular_expression_is_refused() -> None:
    from core.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="handoff_request_pattern is not a valid regular expression"):
        load_settings(overrides={"handoff_request_pattern": "(unclosed", "environment": "testing"})


def test_small_talk_gets_its_reply_and_is_no_question(make_app: Any) -> None:
    """A greeting gets its reply (the model is not asked), is logged as small talk, never routed to review,
    and left out of the overview's shares; "Hi! When will my card arrive? Thanks" is a question, answered as
    one (the model reads it without the greeting and the thanks; the log keeps it as typed)."""
    from core.models import ReviewItemTurn
    from tests.serving.test_admin import add_user, login

    app = make_app(ratelimit_enabled=False, small_talk_thanks="Gern geschehen!")
    client = app.test_client()
    helploop = app.extensions["helploop"]
    hello = chat(client, "Hi there!").get_json()
    assert hello["status"] == "small_talk" and hello["intent"] is None and hello["suggestions"] == []
    assert hello["answer"] == helploop.settings.small_talk_greeting
    question = chat(client, "Hi! When will my card arrive? Thanks", session_id=hello["session_id"]).get_json()
    assert question["status"] == "answered" and question["intent"] == "card_arrival"
    thanks = chat(client, "thanks!", session_id=hello["session_id"]).get_json()
    assert thanks["status"] == "small_talk" and thanks["answer"] == "Gern geschehen!"
    assert chat(client, "ok thanks bye", session_id=hello["session_id"]).get_json()["answer"] == (
        helploop.settings.small_talk_goodbye
    )
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        logged = {t.id: t for t in session.scalars(select(Turn))}
        assert logged[hello["turn_id"]].status == "small_talk" and logged[hello["turn_id"]].candidates == []
        assert logged[question["turn_id"]].user_text == "Hi! When will my card arrive? Thanks"  # as typed
        assert set(session.scalars(select(ReviewItemTurn.turn_id))) <= {question["turn_id"]}
    transcript = client.get(f"/api/v1/sessions/{hello['session_id']}").get_json()
    assert [t["status"] for t in transcript["turns"]] == [
        "small_talk",
        "answered",
        "small_talk",
        "small_talk",
    ]
    add_user(app, "omar", "operator")
    login(client, "omar")
    page = client.get("/operator/").get_data(as_text=True)
    assert "Questions (1)" in page and "and 3 small-talk messages" in page
    assert "1 (100.0%)" in page  # the one question, answered


def test_what_customers_say_after_an_answer_is_no_new_question(make_app: Any) -> None:
    """After an answer, "thank you so much that fixed it" is a thanks and "great, I'll try that" a nod (both
    were asked "did you mean" about the answer's topic), "I don't understand" gets the reply for an unclear
    answer; "I already tried that" rates the answer unhelpful as "that's wrong" does."""
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    answered = chat(client, "when will my card arrive").get_json()
    assert answered["status"] == "answered" and answered["intent"] == "card_arrival"
    sid = answered["session_id"]
    for text, reply in [
        ("great, I'll try that", settings.small_talk_acknowledgement),
        ("ok I'll wait then", settings.small_talk_goodbye),  # a nod to "anything else?" ends the chat
        ("thank you so much that fixed it", settings.small_talk_thanks),
        ("I don't understand", settings.small_talk_unclear),  # was declined as off topic
    ]:
        turn = chat(client, text, session_id=sid).get_json()
        assert (turn["status"], turn["answer"], turn["suggestions"]) == ("small_talk", reply, []), text
    again = chat(client, "when will my card arrive", session_id=sid).get_json()
    tried = chat(client, "I already tried that", session_id=sid).get_json()
    assert tried["status"] == "small_talk" and tried["rated_turn_id"] == again["turn_id"]
    assert tried["answer"].startswith(settings.small_talk_not_helpful) and tried["suggestions"]


def test_that_is_wrong_after_an_answer_is_a_typed_thumbs_down(make_app: Any) -> None:
    """ "That's wrong" right after an answer rates it unhelpful (with the words as the comment), makes it a
    review item as the thumbs-down button does, and offers the intents the model ranked next; with no answer
    before it, it gets the help reply and rates nothing."""
    from core.models import ReviewItemTurn

    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    settings = helploop.settings
    answered = chat(client, "when will my card arrive").get_json()
    assert answered["status"] == "answered" and answered["intent"] == "card_arrival"
    wrong = chat(client, "No, that's not what I asked", session_id=answered["session_id"]).get_json()
    assert wrong["status"] == "small_talk" and wrong["rated_turn_id"] == answered["turn_id"]
    assert wrong["answer"] == f"{settings.small_talk_not_helpful} {settings.clarify_message}"
    offered = [s["intent"] for s in wrong["suggestions"]]
    with helploop.database.session() as session:
        first = session.get(Turn, answered["turn_id"])
        ranked = [c["intent"] for c in first.candidates]
        assert offered == [i for i in ranked if i != "card_arrival"][:3] and len(offered) == 3
        assert (first.helpful, first.feedback_comment) == (False, "No, that's not what I asked")
        assert session.get(Turn, wrong["turn_id"]).suggested == offered
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        reasons = {t: r for t, r in session.execute(select(ReviewItemTurn.turn_id, ReviewItemTurn.reason))}
    assert "thumbs_down" in reasons[answered["turn_id"]] and wrong["turn_id"] not in reasons
    assert 'helploop_feedback_total{helpful="false"} 1.0' in client.get("/metrics").get_data(as_text=True)
    # Twice in a row, or before any answer: nothing (more) to rate, the help reply.
    again = chat(client, "wrong answer", session_id=answered["session_id"]).get_json()
    assert again["answer"] == settings.small_talk_help and again["suggestions"] == []
    assert again["rated_turn_id"] is None and answered.get("rated_turn_id") is None
    alone = chat(client, "that didn't help").get_json()
    assert alone["answer"] == settings.small_talk_help
    history = client.get(f"/api/v1/sessions/{answered['session_id']}").get_json()["turns"]
    assert history[0]["helpful"] is False and [s["intent"] for s in history[1]["suggestions"]] == offered
    # Around a new question: the last answer is rated unhelpful, and the new question is answered.
    pin = chat(client, "change pin number").get_json()
    assert pin["intent"] == "change_pin"
    meant = chat(
        client, "No, that's not what I asked. When will my card arrive?", session_id=pin["session_id"]
    )
    reply = meant.get_json()
    assert (reply["status"], reply["intent"], reply["rated_turn_id"]) == (
        "answered",
        "card_arrival",
        pin["turn_id"],
    )
    with helploop.database.session() as session:
        assert session.get(Turn, pin["turn_id"]).helpful is False
        assert session.get(Turn, reply["turn_id"]).helpful is None


def test_the_choice_clicked_after_that_is_wrong_is_the_customers_answer_for_review(make_app: Any) -> None:
    """After "that's wrong", the chip the customer clicks is recorded on the complaint's turn, which points at
    the answer it rated: review reads it as the customer's pick for that question's item (as a "did you mean"
    pick), and a thumbs-down on the chip's answer is about that same question. Not a "did you mean" choice in
    the metrics."""
    from core.models import ReviewItemTurn
    from crowd_feedback.review import customer_picks
    from tests.serving.test_admin import add_user, login

    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    answered = chat(client, "when will my card arrive").get_json()
    session_id = answered["session_id"]
    wrong = chat(client, "that's wrong", session_id=session_id).get_json()
    offered = [s["intent"] for s in wrong["suggestions"]]
    picked = offered[1]
    clicked = chat(client, f"/{picked}", session_id=session_id).get_json()
    assert (clicked["status"], clicked["intent"]) == ("answered", picked)
    with helploop.database.session() as session:
        complaint = session.get(Turn, wrong["turn_id"])
        assert (complaint.rated_turn_id, complaint.chosen_intent) == (answered["turn_id"], picked)
        assert session.get(Turn, answered["turn_id"]).chosen_intent is None
    assert "helploop_clarify_choices_total{" not in client.get("/metrics").get_data(as_text=True)
    # Thumbs-down on the picked answer: about the first question (the same item), not "/intent".
    down = client.post("/api/v1/feedback", json={"turn_id": clicked["turn_id"], "helpful": False})
    assert down.status_code == 200
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        members = dict(session.execute(select(ReviewItemTurn.turn_id, ReviewItemTurn.item_id)).all())
        assert set(members) == {answered["turn_id"]}
        item_id = members[answered["turn_id"]]
        pick = customer_picks(session, item_ids=[item_id])[item_id]
    assert (pick.intent, list(pick.shown), pick.customers, pick.after_complaint) == (picked, offered, 1, True)
    add_user(app, "omar", "operator")
    login(client, "omar")
    item_page = client.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert (
        f"Told the bot its answer was wrong and offered {', '.join(offered)}, the customer clicked"
        in item_page
    )
    transcript = client.get(f"/operator/conversations/{session_id}").get_data(as_text=True)
    choices = " · ".join(f"<strong>{n}</strong> (clicked)" if n == picked else n for n in offered)
    assert f'<th>instead</th><td class="shown-choices">{choices}</td>' in transcript
    overview = client.get("/operator/").get_data(as_text=True)
    assert re.search(
        r"offered the intents ranked next 1 time;\s+they clicked one after <strong>1</strong> \(100.0%\):"
        r"\s+choice 2: 1\.",
        overview,
    )
    assert 'The bot has not asked "did you mean" yet.' in overview  # not counted as "did you mean"
    table = overview[
        overview.index('id="corrections"') : overview.index("</table>", overview.index('id="corrections"'))
    ]
    assert re.search(rf">card_arrival</a></td><td><a [^>]*>{picked}</a></td><td>1</td>", table)
    # A second click, or a chip of the answer's follow-ups, is no further choice.
    again = chat(client, f"/{offered[0]}", session_id=session_id).get_json()
    with helploop.database.session() as session:
        assert session.get(Turn, wrong["turn_id"]).chosen_intent == picked
        assert session.get(Turn, again["turn_id"]).rated_turn_id is None
    # Around a new question, the reply answers that question: no choices about the rated answer.
    pin = chat(client, "change pin number").get_json()
    reply = chat(client, "Wrong. When will my card arrive?", session_id=pin["session_id"]).get_json()
    assert reply["rated_turn_id"] == pin["turn_id"]
    with helploop.database.session() as session:
        assert session.get(Turn, reply["turn_id"]).rated_turn_id is None


def test_small_talk_can_be_left_to_the_model(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, small_talk=False)
    body = chat(app.test_client(), "Hi there!").get_json()
    assert body["status"] in {"answered", "clarify", "handoff"}


def test_router_skips_look_alikes_while_busy_but_never_routed_turns(app: Any) -> None:
    """Confident look-alikes are a bonus: with the queue half full they are skipped (and counted); turns
    with a reason for review always get their place."""
    import threading

    import numpy as np

    from core.models import ReviewItem
    from serving.review_router import ReviewRouter

    helploop = app.extensions["helploop"]
    lock = threading.Lock()
    skipped: list[int] = []
    router = ReviewRouter(
        helploop.database, helploop.policy, lock, capacity=2, on_skip=lambda: skipped.append(1)
    )
    ids = log_card_turns(
        helploop.database,
        [
            ("where is my card", "handoff"),
            ("card still not here", "handoff"),
            ("when does my card come", "handoff"),
        ],
    )
    vector = np.eye(16)[0]
    with lock:  # the worker blocks on the write lock with the first turn: the queue fills up behind it
        router.submit(ids[0], ["handoff"], vector)
        for _ in range(100):  # until the worker has taken the first turn off the queue
            if router._work.backlog == 0:
                break
            threading.Event().wait(0.01)
        router.submit(ids[1], ["handoff"], vector)  # backlog 1 = half the capacity
        router.submit(ids[2], [], vector)  # a look-alike: skipped
        assert router.skipped == 1 and skipped == [1]
    assert router.drain(10)
    with helploop.database.session() as session:
        items = session.scalars(select(ReviewItem)).all()
        assert len(items) == 1 and items[0].cluster_size == 2  # both routed turns, not the look-alike


def test_router_gives_pending_items_without_a_vector_one_so_look_alikes_can_join(app: Any) -> None:
    """Items opened without a vector (a member the reviewers split off, or a turn routed while no model was
    serving) get one from the serving model's encoder before the next turn looks for a similar item."""
    import threading

    import numpy as np

    from core.models import ReviewItem
    from serving.review_router import ReviewRouter

    helploop = app.extensions["helploop"]
    # The app wires the production model's encoder in (the app fixture serves a fitted model).
    wired = helploop.router.embed_texts(["where is my card"])
    assert wired is not None and wired.shape[0] == 1 and wired.shape[1] >= 16
    vectors = {"where is my card": np.eye(16)[0]}
    asked: list[list[str]] = []
    serving = [False]

    def embed_texts(texts: list[str]) -> np.ndarray | None:
        asked.append(texts)
        return np.stack([vectors[t] for t in texts]) if serving[0] else None

    router = ReviewRouter(helploop.database, helploop.policy, threading.Lock(), embed_texts=embed_texts)
    ids = log_card_turns(
        helploop.database, [("where is my card", "handoff"), ("is my card lost", "answered")]
    )
    router.submit(ids[0], ["handoff"], None)  # no vector: e.g. no model was serving
    assert router.drain(10)
    look_alike = np.eye(16)[0] + 0.05 * np.eye(16)[1]
    router.submit(ids[1], [], look_alike)  # the encoder is not there either: the item stays out of reach
    assert router.drain(10)
    assert asked == [["where is my card"]]
    serving[0] = True
    router.submit(ids[1], [], look_alike)
    assert router.drain(10)
    assert asked == [["where is my card"], ["where is my card"]]
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        assert np.allclose(item.embedding, vectors["where is my card"])
        assert item.cluster_size == 2  # the confident look-alike joined it
    router.submit(ids[1], [], look_alike)  # nothing left without a vector: the encoder is not asked again
    assert router.drain(10)
    assert len(asked) == 2


def test_a_failing_encoder_never_costs_a_turn_its_routing(app: Any) -> None:
    import threading

    import numpy as np

    from core.models import ReviewItem
    from serving.review_router import ReviewRouter

    helploop = app.extensions["helploop"]

    def broken(texts: list[str]) -> np.ndarray | None:
        raise RuntimeError("encoder went away")

    router = ReviewRouter(helploop.database, helploop.policy, threading.Lock(), embed_texts=broken)
    ids = log_card_turns(
        helploop.database, [("where is my card", "handoff"), ("card still not here", "handoff")]
    )
    router.submit(ids[0], ["handoff"], None)  # opens an item without a vector
    router.submit(ids[1], ["handoff"], np.eye(16)[0])  # the backfill fails; this turn is routed all the same
    assert router.drain(10)
    with helploop.database.session() as session:
        items = session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all()
        assert [(i.text, i.embedding is None) for i in items] == [
            ("where is my card", True),
            ("card still not here", False),
        ]


def test_the_handoff_and_contact_replies_are_settings(make_app: Any) -> None:
    from datetime import timedelta

    from core.models import User, utcnow
    from crowd_feedback.reviewers import create_user, mark_seen, operators_online

    app = make_app(
        ratelimit_enabled=False,
        handoff_requested_message="Danke, gleich meldet sich jemand.",
        handoff_offline_message="Gerade ist niemand da: hinterlassen Sie Ihre E-Mail.",
        contact_received_message="Danke, wir melden uns.",
    )
    client = app.test_client()
    database = app.extensions["helploop"].database
    session_id = chat(client, "close my account").get_json()["session_id"]
    # Nobody from the team has had a page open lately: the customer is told, not promised a person now.
    offline = client.post(f"/api/v1/sessions/{session_id}/handoff").get_json()
    assert offline["people_online"] is False
    assert offline["message"] == "Gerade ist niemand da: hinterlassen Sie Ihre E-Mail."
    with database.session() as session:
        omar = create_user(session, username="omar", password="correct horse battery", role="operator")
        rita = create_user(session, username="rita", password="correct horse battery", role="reviewer")
        assert mark_seen(session, user_id=rita.id)
        assert operators_online(session, within_seconds=120) == 0  # reviewers do not take chats
        long_ago = utcnow() - timedelta(minutes=10)
        assert mark_seen(session, user_id=omar.id, now=long_ago)
    assert client.post(f"/api/v1/sessions/{session_id}/handoff").get_json()["people_online"] is False
    with database.session() as session:
        assert mark_seen(session, user_id=omar.id)
        assert not mark_seen(session, user_id=omar.id)  # written at most twice a minute
        assert operators_online(session, within_seconds=120) == 1
    handoff = client.post(f"/api/v1/sessions/{session_id}/handoff").get_json()
    assert handoff["people_online"] is True and handoff["message"] == "Danke, gleich meldet sich jemand."
    with database.session() as session:
        session.get(User, omar.id).active = False  # a deactivated operator is nobody
    assert client.post(f"/api/v1/sessions/{session_id}/handoff").get_json()["people_online"] is False
    left = client.post(
        f"/api/v1/sessions/{session_id}/contact", json={"contact": "jo@example.com"}
    ).get_json()
    assert left["message"] == "Danke, wir melden uns."


def test_outside_the_team_hours_a_customer_handed_to_a_person_is_told_when_the_team_is_back(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HELPLOOP_TEAM_HOURS: with nobody online outside the hours, a typed request, the button and the bot's
    own handoff say when the team is back (and the API says it as a time); within them, the offline line as
    before; an operator online (working late) takes the chat whatever the hours."""
    from datetime import UTC, datetime

    import serving.api
    from crowd_feedback.reviewers import create_user, mark_seen

    clock = {"now": datetime(2026, 12, 5, 15, 0, tzinfo=UTC)}  # a Saturday, 15:00 in London
    monkeypatch.setattr(serving.api, "utcnow", lambda: clock["now"])
    app = make_app(
        ratelimit_enabled=False,
        same_answer_limit=1,  # the second "where is my card" is the bot's own handoff
        team_hours="Mon-Fri 09:00-17:30; Sat 10:00-14:00",
        team_timezone="Europe/London",
    )
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    away = (
        "Our team is away right now and back on Monday at 09:00 GMT. "
        "Leave your e-mail or phone number and we will get back to you then."
    )
    asked = chat(client, "can I talk to a human?").get_json()
    assert (asked["status"], asked["answer"]) == ("handoff", away)
    assert asked["team_back"] == "2026-12-07T09:00:00+00:00"
    button = client.post(f"/api/v1/sessions/{asked['session_id']}/handoff").get_json()
    assert (button["people_online"], button["message"], button["team_back"]) == (
        False,
        away,
        "2026-12-07T09:00:00+00:00",
    )
    first = chat(client, "when will my card arrive").get_json()
    assert (first["status"], first["team_back"]) == ("answered", None) and "away" not in first["answer"]
    passed = chat(client, "where is my card", session_id=first["session_id"]).get_json()
    assert passed["status"] == "handoff"
    assert passed["answer"] == f"{settings.same_answer_handoff_message} {away}"
    assert passed["team_back"] == "2026-12-07T09:00:00+00:00"
    assert [t.answer for t in turns(app)][-1] == passed["answer"]  # the log keeps what was said
    # The Azure-shaped endpoint says the same, under a client's threshold too (its default answer).
    azure = "/language/:query-knowledgebases?projectName=p&deploymentName=production&api-version=2021-10-01"
    for question, said in (
        ("can I talk to a human?", away),
        ("plonk zebra quantum", f"{settings.handoff_message} {away}"),
    ):
        for threshold in (0.0, 0.5):
            body = {"question": question, "top": 3, "confidenceScoreThreshold": threshold}
            answers = client.post(azure, json=body).get_json()["answers"]
            assert [a["answer"] for a in answers] == [said], (question, threshold)
    # An answer too unsure for the client's threshold: Azure's default answer, the handoff line, and when
    # the team is back, as the chat's own handoff says.
    body = {"question": "when does it come", "top": 3, "confidenceScoreThreshold": 0.9}  # 0.72 sure
    unsure = client.post(azure, json=body).get_json()["answers"]
    assert [(a["answer"], a["confidenceScore"]) for a in unsure] == [
        (f"{settings.handoff_message} {away}", 0.0)
    ]
    clock["now"] = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)  # Sunday evening
    assert "back tomorrow at 09:00 GMT." in chat(client, "agent please").get_json()["answer"]
    clock["now"] = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)  # within Saturday's hours, nobody online
    within = chat(client, "can I talk to a human?").get_json()
    assert (within["answer"], within["team_back"]) == (settings.handoff_offline_message, None)
    clock["now"] = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    with app.extensions["helploop"].database.session() as session:
        omar = create_user(session, username="omar", password="correct horse battery", role="operator")
        assert mark_seen(session, user_id=omar.id)
    late = chat(client, "can I talk to a human?").get_json()
    assert (late["answer"], late["team_back"]) == (settings.handoff_requested_message, None)


def test_misspelt_words_are_read_as_the_knowledge_bases_own_and_the_log_keeps_both(make_app: Any) -> None:
    """ "how do i chnage my pni" is answered as "how do i change my pin" is; the turn log keeps the message as
    typed and as read, and the operator sees both (the conversation and the Try page)."""
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    reply = chat(client, "how do i chnage my pni").get_json()
    assert (reply["status"], reply["intent"]) == ("answered", "change_pin")
    assert "read_as" not in reply  # the customer's own words stay theirs
    chat(client, "how do i change my pin", session_id=reply["session_id"])
    logged = turns(app)
    assert [(t.user_text, t.read_as) for t in logged] == [
        ("how do i chnage my pni", "how do i change my pin"),
        ("how do i change my pin", None),
    ]
    from tests.serving.test_admin import add_user, login

    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get(f"/operator/conversations/{reply['session_id']}").get_data(as_text=True)
    assert page.count('class="read-as"') == 1 and "“how do i change my pin”" in page
    tried = operator.get("/operator/knowledge/try?q=chnage+my+pni").get_data(as_text=True)
    assert 'id="read-as-production"' in tried and "“change my pin”" in tried


def test_spelling_correction_off_reads_messages_as_typed(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, spelling_correction=False)
    assert app.extensions["helploop"].models.state.production.spelling is None
    chat(app.test_client(), "how do i chnage my pni")
    assert [t.read_as for t in turns(app)] == [None]


def test_a_keyword_message_is_asked_about_when_its_words_are_shared(make_app: Any) -> None:
    """The toy knowledge base uses "card" for one intent only; at a share no intent can reach (set on the
    loaded model, as HELPLOOP_KEYWORD_SHARE is) "card" is asked about, while a question is still answered;
    the Try page says why."""
    app = make_app(ratelimit_enabled=False)
    engine = app.extensions["helploop"].models.state.production
    assert engine.keywords is not None and engine.keywords.min_share == 0.7
    client = app.test_client()
    assert chat(client, "card").get_json()["status"] == "answered"  # all the toy's "card" rows: one intent
    engine.keywords.min_share = 1.01
    asked = chat(client, "card").get_json()
    assert asked["status"] == "clarify" and asked["intent"] is None
    assert asked["suggestions"][0]["intent"] == "card_arrival" and len(asked["suggestions"]) >= 2
    assert chat(client, "where is my card").get_json()["status"] == "answered"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_keyword_asked_total{arm="production"} 1.0' in metrics
    assert [(t.user_text, t.status, t.vague) for t in turns(app)] == [
        ("card", "answered", False),
        ("card", "clarify", True),
        ("where is my card", "answered", False),
    ]
    from tests.serving.test_admin import add_user, login

    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    tried = operator.get("/operator/knowledge/try?q=card").get_data(as_text=True)
    assert 'id="vague-production"' in tried and "card_arrival</a> 100 %" in tried
    page = operator.get(f"/operator/conversations/{asked['session_id']}").get_data(as_text=True)
    assert page.count('class="vague"') == 1 and "would have answered card_arrival" in page
    # Azure's shape: each choice scored by its share of the words' uses, not by the model's probability (a
    # client that takes the top answer must not read "card" as sure when the knowledge base shares it).
    from bot.keywords import KeywordIndex
    from serving.azure_qa import qna_id

    rows = ["card a", "card b", "card c", "card d"]
    labels = ["card_arrival", "card_arrival", "exchange_rate", "exchange_rate"]
    engine.keywords = KeywordIndex.fit(rows, labels, engine.labels, min_share=0.7)  # "card": half each
    assert engine.predict("card").ranking[0].probability > 0.6
    azure = client.post(AZURE, json={"question": "card", "top": 3}).get_json()["answers"]
    scores = {a["id"]: a["confidenceScore"] for a in azure}
    assert scores[qna_id("card_arrival")] == 0.5 and max(scores.values()) == 0.5
    parsed = client.post("/model/parse", json={"text": "card"}).get_json()  # Rasa NLU: the same shares
    assert parsed["intent"]["confidence"] == 0.5 and parsed["intent_ranking"][0]["confidence"] == 0.5
    assert parsed["intent"]["name"] in {"card_arrival", "exchange_rate"}
    assert (
        client.post("/model/parse", json={"text": "where is my card"}).get_json()["intent"]["confidence"]
        > 0.6
    )


def test_an_intent_the_customer_rules_out_is_left_out_logged_and_shown(make_app: Any) -> None:
    """ "I don't want to close my account, I just want to change my pin": the toy model reads "close my
    account" as terminate_account and the rest as change_pin, so terminate_account is ruled out; the turn
    log, the conversation page and the Try page say so."""
    app = make_app(ratelimit_enabled=False)
    assert app.extensions["helploop"].models.state.production.negation is True
    client = app.test_client()
    text = "I don't want to close my account, I just want to change my pin"
    reply = chat(client, text).get_json()
    assert reply["intent"] != "terminate_account"
    assert "terminate_account" not in {s["intent"] for s in reply["suggestions"]}
    assert [(t.user_text, t.ruled_out) for t in turns(app)] == [(text, "terminate_account")]
    assert (reply["status"], reply["intent"]) == ("answered", "change_pin")
    logged = {c["intent"]: c["probability"] for c in turns(app)[0].candidates}
    assert logged["terminate_account"] == 0.0 and logged["change_pin"] > 0.99  # its share went to the rest
    from tests.serving.test_admin import add_user, login

    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get(f"/operator/conversations/{reply['session_id']}").get_data(as_text=True)
    assert page.count('class="ruled-out"') == 1 and "terminate_account <span" in page
    tried = operator.get("/operator/knowledge/try", query_string={"q": text}).get_data(as_text=True)
    assert 'id="ruled-out-production"' in tried and "not about <a" in tried


def test_negation_off_reads_the_message_whole(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, negation=False)
    assert app.extensions["helploop"].models.state.production.negation is False
    chat(app.test_client(), "I don't want to close my account, I just want to change my pin")
    assert [t.ruled_out for t in turns(app)] == [None]


def test_keyword_share_zero_answers_keyword_messages_as_any(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, keyword_share=0)
    assert app.extensions["helploop"].models.state.production.keywords is None
    assert chat(app.test_client(), "card").get_json()["status"] == "answered"


def test_a_complaint_the_bot_cannot_answer_goes_to_a_person(make_app: Any) -> None:
    """ "I want to make a complaint" was declined as off topic ("Sorry, I don't have an answer to that"): it
    now gets the reply of the "Talk to a person" button and a place in the handoff inbox, logged as the
    customer asking (no review item). Exasperation the bot would decline goes the same way; exasperation
    around a question it answers is answered."""
    from core.models import Conversation

    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    settings = helploop.settings
    engine = helploop.models.state.production
    assert engine.predict("I want to make a complaint").status == "clarify"  # the model alone asks
    complaint = chat(client, "I want to make a complaint").get_json()
    assert complaint["status"] == "handoff" and complaint["answer"] == settings.handoff_offline_message
    assert engine.predict("xylophone aardvark telescope, ridiculous").off_topic
    fed_up = chat(client, "xylophone aardvark telescope, ridiculous").get_json()
    assert fed_up["status"] == "handoff" and fed_up["answer"] == settings.handoff_offline_message
    answered = chat(client, "this is ridiculous, where is my card").get_json()
    assert (answered["status"], answered["intent"]) == ("answered", "card_arrival")
    with helploop.database.session() as session:
        for reply in (complaint, fed_up):
            assert session.get(Conversation, reply["session_id"]).handoff_requested_at is not None
        assert session.get(Conversation, answered["session_id"]).handoff_requested_at is None
    assert [t.status for t in turns(app)] == ["asked_for_person", "asked_for_person", "answered"]


def test_complaints_are_left_to_the_model_with_handoff_requests_off(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, handoff_requests=False)
    reply = chat(app.test_client(), "I want to make a complaint").get_json()
    # The toy model asks "did you mean" (closing the account first): what it would say with the rule off.
    assert reply["status"] == "clarify" and reply["suggestions"][0]["intent"] == "terminate_account"
    assert [t.status for t in turns(app)] == ["clarify"]


GERMAN = "Gibt es eine Gebühr für Abhebungen im Ausland?"


def test_a_declined_message_in_another_language_is_told_so_in_that_language(make_app: Any) -> None:
    """Declined as off the knowledge base's topic and written in German: the customer is told, in German and
    in English, that the bot answers in English (not that it has no answer), a person one click away as
    ever; the turn keeps the language (conversation page, metric). An English message declined as off topic
    gets the off-topic line as before, and a question the bot answers is never read for its language."""
    from bot.language import REPLIES
    from tests.serving.test_admin import add_user, csrf_token, login

    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    german = chat(client, GERMAN).get_json()  # no word of the toy knowledge base's: declined as off topic
    assert german["status"] == "off_topic" and german["suggestions"] == []
    assert german["answer"] == f"{REPLIES['de']}\n\n{settings.other_language_message}"
    assert "Englisch" in german["answer"] and "only answer questions in English" in german["answer"]
    english = chat(client, "xylophone aardvark telescope").get_json()
    assert english["status"] == "off_topic" and english["answer"] == settings.off_topic_message
    chat(client, "where is my card")
    assert [(t.status, t.language) for t in turns(app)] == [
        ("off_topic", "de"),
        ("off_topic", None),
        ("answered", None),
    ]
    assert 'helploop_other_language_total{language="de"} 1.0' in client.get("/metrics").get_data(as_text=True)
    # The Rasa channel says the same, with its button for a person.
    rasa = client.post("/webhooks/rest/webhook", json={"sender": "u1", "message": GERMAN}).get_json()
    assert rasa[0]["text"] == german["answer"]
    assert rasa[0]["buttons"] == [{"title": "Talk to a person", "payload": "Talk to a person"}]
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get(f"/operator/conversations/{german['session_id']}").get_data(as_text=True)
    assert (
        page.count('class="other-language"') == 1 and "written in another language (<code>de</code>)" in page
    )
    # The overview counts them by language (the chat's and the Rasa channel's).
    overview = operator.get("/operator/").get_data(as_text=True)
    assert re.search(r'id="other-languages"><code>de</code> 2\.', overview)
    # Reviewers are told the language of the question they are shown (and to label what it asks).
    assert app.extensions["helploop"].router.drain(10)
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    notes = {}
    for _ in range(3):
        page = reviewer.get("/review/next").get_data(as_text=True)
        shown = re.search(r'<blockquote id="question"[^>]*>([^<]*)</blockquote>', page)
        if shown is None:
            break
        notes[shown.group(1)] = re.search(r'id="item-language">Written in (\w+):', page)
        item_id = re.search(r'action="/review/items/(\d+)"', page).group(1)
        form = {"csrf_token": csrf_token(page), "choice": "not_a_question"}
        assert reviewer.post(f"/review/items/{item_id}", data=form).status_code == 302
    assert notes[GERMAN] is not None and notes[GERMAN].group(1) == "German"
    assert notes["xylophone aardvark telescope"] is None


def test_the_language_check_can_be_off_and_refuses_a_language_it_cannot_tell(
    make_app: Any, tmp_path: Any
) -> None:
    from core.settings import SettingsError
    from serving import create_app

    app = make_app(ratelimit_enabled=False, language="")
    settings = app.extensions["helploop"].settings
    german = chat(app.test_client(), GERMAN).get_json()
    assert german["status"] == "off_topic" and german["answer"] == settings.off_topic_message
    assert turns(app)[0].language is None
    with pytest.raises(SettingsError, match="'xx' is not one HelpLoop can identify"):
        create_app({"language": "xx", "environment": "testing", "instance_path": str(tmp_path)})
    from core.settings import load_settings

    with pytest.raises(SettingsError, match="language must be a two-letter code"):
        load_settings(overrides={"language": "english", "environment": "testing"})


def test_the_answer_just_given_asked_for_again_offers_a_person_then_passes_the_conversation_on(
    make_app: Any,
) -> None:
    """A customer who asks again, in other words, for the answer just given (small talk in between) gets it
    again with the offer of a person under it; asked for once more, the conversation goes to a person (the
    handoff line, the inbox) instead of a third copy. Each is a review item with the reason, the turn keeps
    how many times in a row the answer was given (conversation page, transcript, export, overview, the
    knowledge base's column, metric), and the chain ends with a handoff or another answer."""
    from core.knowledge_base import import_knowledge_base
    from core.models import ReviewItem, ReviewItemTurn
    from crowd_feedback.export import write_export
    from crowd_feedback.quality import overview as overview_figures
    from tests.serving.test_admin import add_user, login
    from tests.training.test_kb_check import toy_knowledge

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)  # no random audit among the reasons
    client = app.test_client()
    helploop = app.extensions["helploop"]
    settings = helploop.settings
    first = chat(client, "when will my card arrive").get_json()
    session_id = first["session_id"]
    assert (first["status"], first["intent"], first["asked_again"]) == ("answered", "card_arrival", False)
    assert chat(client, "thanks", session_id=session_id).get_json()["status"] == "small_talk"
    again = chat(client, "where is my card", session_id=session_id).get_json()
    assert (again["status"], again["intent"], again["asked_again"]) == ("answered", "card_arrival", True)
    assert again["answer"] == f"{first['answer']}\n\n{settings.asked_again_message}"
    assert again["suggestions"] == first["suggestions"]  # the answer's own follow-up chips, as before
    third = chat(client, "my card has not arrived", session_id=session_id).get_json()
    assert (third["status"], third["intent"], third["asked_again"]) == ("handoff", None, False)
    assert third["answer"] == settings.same_answer_handoff_message and third["suggestions"] == []
    assert third["answer"] == "I keep giving you the same answer, so I'm passing you to a person on our team."
    logged = turns(app)
    assert [(t.status, t.intent, t.asked_again) for t in logged] == [
        ("answered", "card_arrival", None),
        ("small_talk", None, None),
        ("answered", "card_arrival", 2),
        ("handoff", None, 3),
    ]
    assert logged[3].candidates[0]["intent"] == "card_arrival"  # the model's reading stays in the log
    # After the handoff the chain starts again; another intent's answer, or a clicked chip, is no repeat.
    assert chat(client, "where is my card", session_id=session_id).get_json()["asked_again"] is False
    assert chat(client, "change pin number", session_id=session_id).get_json()["asked_again"] is False
    clicked = chat(client, "/change_pin", session_id=session_id).get_json()
    assert (clicked["intent"], clicked["asked_again"]) == ("change_pin", False)
    pin = chat(client, "how do i change my pin", session_id=session_id).get_json()
    assert (pin["intent"], pin["asked_again"]) == ("change_pin", True)  # after the chip's answer: again
    alone = chat(client, "where is my card").get_json()  # a new conversation: a first answer
    assert alone["asked_again"] is False
    history = client.get(f"/api/v1/sessions/{session_id}").get_json()["turns"]
    assert [t["asked_again"] for t in history] == [False, False, True, False, False, False, False, True]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_asked_again_total{outcome="answered"} 2.0' in metrics
    assert 'helploop_asked_again_total{outcome="handoff"} 1.0' in metrics
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        reasons = {  # each turn's item's reasons
            turn_id: set(item_reasons)
            for turn_id, item_reasons in session.execute(
                select(ReviewItemTurn.turn_id, ReviewItem.reasons).join(
                    ReviewItem, ReviewItem.id == ReviewItemTurn.item_id
                )
            )
        }
        out = Path(helploop.settings.instance_path) / "turns.jsonl"
        write_export(session, what="turns", fmt="jsonl", out=out)
        exported = {row["turn"]: row["asked_again"] for row in map(json.loads, out.read_text().splitlines())}
        figures = overview_figures(session).asked_again
    assert (figures.answered, figures.handed_over) == (2, 1)
    assert "asked_again" in reasons[again["turn_id"]] and "asked_again" in reasons[pin["turn_id"]]
    assert {"handoff", "asked_again"} <= reasons[third["turn_id"]]
    assert first["turn_id"] not in reasons  # a confident first answer, before any item to join
    assert exported[again["turn_id"]] == 2 and exported[third["turn_id"]] == 3
    assert exported[first["turn_id"]] is None
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get(f"/operator/conversations/{session_id}").get_data(as_text=True)
    assert page.count('class="asked-again"') == 3
    assert "given 2 times in a row now, with the offer of a person" in page
    assert "would have been 3 times in a row): passed to a person instead" in page
    overview = operator.get("/operator/").get_data(as_text=True)
    assert re.search(r'id="asked-again">Customers asked again [^<]*<strong>3</strong> times', overview)
    assert 'href="/operator/conversations?view=asked_again">the conversations</a>' in overview
    listed = operator.get("/operator/conversations?view=asked_again").get_data(as_text=True)
    assert session_id in listed and alone["session_id"] not in listed  # only where someone asked again
    assert re.search(r'<td class="asked-again">3</td>', listed)  # 2 answered again, 1 passed on
    everything = operator.get("/operator/conversations?view=all").get_data(as_text=True)
    assert session_id in everything and alone["session_id"] in everything
    assert "2 given again with the offer of a person, 1 passed to a person instead" in overview
    with helploop.database.session() as session:  # the knowledge base the toy bundles were built from
        import_knowledge_base(session, incoming=toy_knowledge(), source="test")
    knowledge = operator.get("/operator/knowledge/").get_data(as_text=True)
    cells = dict(
        re.findall(r'<tr data-intent="(\w+)">.*?<td class="asked-again">(\d*)</td>', knowledge, re.S)
    )
    assert cells == {"card_arrival": "1", "change_pin": "1", "exchange_rate": "", "terminate_account": ""}


def test_azure_says_why_it_hands_over_an_answer_asked_for_once_too_often(client: Any, app: Any) -> None:
    """Azure's runtime shape: the answer asked for again is the QnA's answer as ever (an Azure answer is the
    knowledge base's text); once more, the no-match result carries the same-answer line (not the "I'm not
    sure I understood" handoff line)."""
    from serving.azure_qa import NO_ANSWER_ID

    settings = app.extensions["helploop"].settings
    asked = [
        client.post(AZURE, json={"question": q, "userId": "user-9"}).get_json()["answers"][0]
        for q in ("when will my card arrive", "where is my card", "my card has not arrived")
    ]
    assert asked[1]["answer"] == asked[0]["answer"] and asked[1]["id"] == asked[0]["id"]
    assert (asked[2]["id"], asked[2]["answer"]) == (NO_ANSWER_ID, settings.same_answer_handoff_message)


def test_the_rasa_channel_offers_a_person_under_an_answer_asked_for_again(client: Any) -> None:
    first = client.post(
        "/webhooks/rest/webhook", json={"sender": "u7", "message": "when will my card arrive"}
    )
    again = client.post("/webhooks/rest/webhook", json={"sender": "u7", "message": "where is my card"})
    first_reply, again_reply = first.get_json()[0], again.get_json()[0]
    assert {"title": "Talk to a person", "payload": "Talk to a person"} not in first_reply.get("buttons", [])
    assert again_reply["text"].startswith(first_reply["text"]) and again_reply["text"] != first_reply["text"]
    assert again_reply["buttons"][-1] == {"title": "Talk to a person", "payload": "Talk to a person"}
    assert again_reply["buttons"][:-1] == first_reply.get("buttons", [])


def test_with_no_same_answer_limit_every_answer_is_given_as_if_new(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, same_answer_limit=0, asked_again_message="")
    client = app.test_client()
    first = chat(client, "when will my card arrive").get_json()
    for text in ("where is my card", "my card has not arrived"):
        reply = chat(client, text, session_id=first["session_id"]).get_json()
        assert (reply["status"], reply["answer"], reply["asked_again"]) == (
            "answered",
            first["answer"],
            False,
        )
    assert [t.asked_again for t in turns(app)] == [None, None, None]


def test_a_same_answer_limit_of_one_passes_the_first_repeat_on(make_app: Any) -> None:
    from core.settings import SettingsError, load_settings

    app = make_app(ratelimit_enabled=False, same_answer_limit=1)
    client = app.test_client()
    first = chat(client, "when will my card arrive").get_json()
    reply = chat(client, "where is my card", session_id=first["session_id"]).get_json()
    assert (reply["status"], reply["asked_again"]) == ("handoff", False)
    assert [t.asked_again for t in turns(app)] == [None, 2]
    with pytest.raises(SettingsError, match="same_answer_limit must be 0 to 10, not 11"):
        load_settings(overrides={"same_answer_limit": 11, "environment": "testing"}, environ={})


def test_a_thumbs_down_offers_the_intents_ranked_next_as_the_typed_complaint_does(make_app: Any) -> None:
    """A thumbs-down on an answer is answered, as a typed "that's wrong" is, with the deployment's line and
    the three intents the model ranked next for that question (the wrong answer left out); a thumbs-up with
    nothing. The thumbs-down is stored and reviewed as before, and no turn is logged for the offer."""
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    answered = chat(client, "when will my card arrive").get_json()
    down = client.post("/api/v1/feedback", json={"turn_id": answered["turn_id"], "helpful": False}).get_json()
    assert down["reply"] == f"{settings.small_talk_not_helpful} {settings.clarify_message}"
    ranked = [c["intent"] for c in turns(app)[0].candidates]
    offered = [s["intent"] for s in down["suggestions"]]
    assert offered == [i for i in ranked if i != "card_arrival"][:3] and len(offered) == 3
    assert all(s["title"] for s in down["suggestions"])
    up = client.post("/api/v1/feedback", json={"turn_id": answered["turn_id"], "helpful": True}).get_json()
    assert (up["helpful"], up["reply"], up["suggestions"]) == (True, None, [])
    # A clicked chip's answer (the model ranked nothing else): the line alone.
    clicked = chat(client, "/change_pin", session_id=answered["session_id"]).get_json()
    alone = client.post("/api/v1/feedback", json={"turn_id": clicked["turn_id"], "helpful": False}).get_json()
    assert (alone["reply"], alone["suggestions"]) == (settings.small_talk_not_helpful, [])
    assert [t.helpful for t in turns(app)] == [True, False]  # stored; no turn for the offers


def test_a_yes_or_a_no_typed_to_did_you_mean(make_app: Any) -> None:
    """ "Yes" to several choices asks which one and shows the same chips (it got "Is there anything else I
    can help with?"); the pick after it, typed or clicked, is the customer's answer to the "did you mean"
    (recorded there; a thumbs-down on it reviews that question). A bare "no" is "none of these" (it got a
    goodbye)."""
    from core.models import ReviewItemTurn

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)
    client = app.test_client()
    helploop = app.extensions["helploop"]
    settings = helploop.settings
    asked = chat(client, "card pin").get_json()
    shown = [s["intent"] for s in asked["suggestions"]]
    assert asked["status"] == "clarify" and len(shown) >= 2
    sid = asked["session_id"]
    for yes in ("yes", "yeah"):  # asked twice: the same choices each time
        which = chat(client, yes, session_id=sid).get_json()
        assert (which["status"], which["answer"]) == ("small_talk", settings.small_talk_which_one), yes
        assert [s["intent"] for s in which["suggestions"]] == shown and which["intent"] is None
    second = chat(client, "the second one", session_id=sid).get_json()
    assert (second["status"], second["intent"], second["confidence"]) == ("answered", shown[1], 1.0)
    thumbs = client.post("/api/v1/feedback", json={"turn_id": second["turn_id"], "helpful": False})
    assert thumbs.status_code == 200
    clicked = chat(client, "card pin").get_json()
    chat(client, "yes", session_id=clicked["session_id"])
    chip = chat(client, f"/{shown[0]}", session_id=clicked["session_id"]).get_json()
    assert chip["intent"] == shown[0]
    refused = chat(client, "card pin").get_json()
    no = chat(client, "no", session_id=refused["session_id"]).get_json()
    assert no["status"] == "handoff" and no["answer"] in {
        settings.handoff_requested_message,
        settings.handoff_offline_message,
    }
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        logged = {t.id: t for t in session.scalars(select(Turn))}
        assert logged[asked["turn_id"]].chosen_intent == shown[1]  # past the two "which one?" replies
        assert logged[clicked["turn_id"]].chosen_intent == shown[0]
        assert logged[which["turn_id"]].suggested == shown and logged[which["turn_id"]].chosen_intent is None
        assert logged[refused["turn_id"]].declined_at is not None
        assert logged[no["turn_id"]].status == "asked_for_person"
        reviewed = dict(session.execute(select(ReviewItemTurn.turn_id, ReviewItemTurn.reason)).all())
    assert "thumbs_down" in reviewed[asked["turn_id"]] and which["turn_id"] not in reviewed
    transcript = client.get(f"/api/v1/sessions/{sid}").get_json()["turns"]
    resumed = next(t for t in transcript if t["turn_id"] == which["turn_id"])
    assert [s["intent"] for s in resumed["suggestions"]] == shown  # a reload shows the chips again


def test_ok_and_yes_are_read_by_what_the_bot_said_before(make_app: Any) -> None:
    """An acknowledgement with nothing to acknowledge ("ok" first, or after "Hello! What can I help you
    with?") and a yes to "Is there anything else I can help with?" get "Sure, what would you like to
    ask?" (they got "Is there anything else I can help with?"); another nod to that question ends the chat;
    after an answer "ok" asks whether there is anything else, as before."""
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    settings = app.extensions["helploop"].settings

    def replies(*messages: str) -> list[str]:
        sid, out = None, []
        for message in messages:
            body = chat(client, message, **({"session_id": sid} if sid else {})).get_json()
            sid = body["session_id"]
            out.append(body["answer"])
        return out

    assert replies("ok") == [settings.small_talk_go_ahead]
    assert replies("hi", "ok") == [settings.small_talk_greeting, settings.small_talk_go_ahead]
    said = replies("when will my card arrive", "ok", "yes", "how do I change my pin", "thanks", "ok")
    assert said[1:3] == [settings.small_talk_acknowledgement, settings.small_talk_go_ahead]
    assert said[4:] == [settings.small_talk_thanks, settings.small_talk_goodbye]
    assert replies("thanks", "one more thing")[1] == settings.small_talk_go_ahead
    angry = replies("when will my card arrive", "😡")[1]  # the thumbs-down, typed
    assert angry.startswith(settings.small_talk_not_helpful)


def conversation_row(app: Any, conversation_id: str) -> Any:
    from core.models import Conversation

    with app.extensions["helploop"].database.session() as session:
        row = session.get(Conversation, conversation_id)
        session.expunge(row)
        return row


def test_the_widget_page_is_kept_with_the_conversation_as_the_customer_moves(client: Any, app: Any) -> None:
    first = chat(
        client, "where is my card", page="https://Shop.example.com/cards/replace?token=s3cret#faq"
    ).get_json()
    row = conversation_row(app, first["session_id"])
    assert row.site == "https://shop.example.com"
    assert row.page_url == "https://shop.example.com/cards/replace"  # no query, no fragment
    chat(
        client, "how do i change my pin", session_id=first["session_id"], page="https://shop.example.com/pin"
    )
    assert conversation_row(app, first["session_id"]).page_url == "https://shop.example.com/pin"
    # a message without the field (an API caller, an older widget) leaves the page as it was
    chat(client, "thanks", session_id=first["session_id"])
    assert conversation_row(app, first["session_id"]).page_url == "https://shop.example.com/pin"
    # personal data in the path is redacted before it is kept
    other = chat(client, "where is my card", page="https://shop.example.com/u/jane@example.com").get_json()
    assert conversation_row(app, other["session_id"]).page_url == "https://shop.example.com/u/[EMAIL]"
    # while a person chats with the customer, their messages still move the page
    from core.registry import agent_reply, request_handoff

    with app.extensions["helploop"].database.session() as session:
        request_handoff(session, conversation_id=first["session_id"])
        agent_reply(session, conversation_id=first["session_id"], agent="omar", text="Hi, Omar here")
        session.commit()
    live = chat(client, "still there?", session_id=first["session_id"], page="https://shop.example.com/help")
    assert live.get_json()["status"] == "agent"
    assert conversation_row(app, first["session_id"]).page_url == "https://shop.example.com/help"


@pytest.mark.parametrize(
    ("page", "code"),
    [
        (42, "invalid_type"),
        ("file:///home/me/page.html", "invalid_page"),
        ("not an address", "invalid_page"),
        ("https://shop.example.com/" + "a" * 2000, "invalid_page"),
    ],
)
def test_a_bad_page_is_refused_and_nothing_is_logged(client: Any, app: Any, page: Any, code: str) -> None:
    response = chat(client, "where is my card", page=page)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == code and error["field"] == "page"
    assert turns(app) == []
