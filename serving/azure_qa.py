"""An endpoint shaped like Azure AI Language question answering's runtime, so a bot built on it (the Azure
SDKs, Bot Framework's question answering dialog) can point at HelpLoop by changing its endpoint.

``POST /language/:query-knowledgebases`` takes ``question`` (or ``qnaId``: a follow-up prompt the user
clicked; or ``context.previousQnaId`` with a question that is one of that QnA's prompts, typed), ``top``,
``confidenceScoreThreshold`` and ``userId`` (the conversation) and returns ``answers``: the intent's answer
with its calibrated confidence as ``confidenceScore``, the title as the QnA's question, and its follow-ups as
``dialog.prompts``. Each intent's ``id`` is a stable number derived from its name (the same in every model
version), which is what a later ``qnaId`` or ``context.previousQnaId`` carries.

HelpLoop's own judgement stays in force: when it is unsure it returns its "did you mean" choices as several
answers (the Azure clients show them as a "did you mean" card), and when it would hand over it returns the
no-answer result Azure returns (``id`` -1, score 0) with the hand-over message. Every question is a logged
turn (channel ``azure``) and is reviewed like any other. The subscription key header Azure clients send is
not checked: like the chat API and the widget, this endpoint is public and rate-limited.
"""

from __future__ import annotations

import zlib
from typing import Any

from flask import Blueprint, Response, jsonify

from bot.engine import (
    ANSWERED,
    CLARIFY,
    SMALL_TALK,
    AnsweringEngine,
    Candidate,
    MetadataFilter,
    Prediction,
)
from core.kb_checks import question_key
from core.models import new_uuid
from serving.api import (
    answer_message,
    away_text,
    external_session_id,
    json_body,
    metadata_filter,
    team_availability,
    text_field,
    to_live_chat,
)
from serving.app import db_session, limiter, state
from serving.errors import APIError

azure_qa = Blueprint("azure_qa", __name__)
NO_ANSWER_ID = -1  # Azure's id for "no good match" (its default answer)
MAX_TOP = 50


def qna_id(intent: str) -> int:
    """The intent's QnA id: a positive 31-bit number derived from its name, stable across versions."""
    return zlib.crc32(intent.encode("utf-8")) & 0x7FFFFFFF or 1


def _limit() -> str:
    return state().settings.chat_rate_limit


def _integer(
    body: dict[str, Any], name: str, default: int, *, low: int, high: int, field: str | None = None
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        field = field or name
        raise APIError(400, "invalid_value", f"'{field}' must be a whole number from {low} to {high}", field)
    return value


def _threshold(body: dict[str, Any]) -> float:
    value = body.get("confidenceScoreThreshold", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise APIError(
            400,
            "invalid_value",
            "'confidenceScoreThreshold' must be a number from 0 to 1",
            "confidenceScoreThreshold",
        )
    return float(value)


def _prompt_typed(engine: AnsweringEngine, body: dict[str, Any], question: str) -> str | None:
    """The follow-up whose prompt the user typed (or a client sent as the question) after the QnA in
    ``context.previousQnaId``, as Azure's multi-turn answers it; None when there is no such context or the
    question is not one of its prompts (then it is answered as any question)."""
    context = body.get("context")
    if context is None:
        return None
    if not isinstance(context, dict):
        raise APIError(400, "invalid_value", "'context' must be an object", "context")
    if context.get("previousQnaId") in (None, ""):
        return None
    previous_id = _integer(
        context, "previousQnaId", 0, low=-1, high=0x7FFFFFFF, field="context.previousQnaId"
    )
    previous = next((i for i in engine.knowledge if qna_id(i) == previous_id), None)
    if previous is None:
        return None
    wanted = question_key(question)
    return next(
        (
            f
            for f in engine.knowledge[previous].follow_ups
            if f in engine.knowledge and question_key(engine.knowledge[f].title or f) == wanted
        ),
        None,
    )


def _filters(body: dict[str, Any]) -> MetadataFilter | None:
    """``filters.metadataFilter``: ``metadata`` ``[{"key", "value"}]`` joined by ``logicalOperation``
    (``AND``, the default here, or ``OR``). ``sourceFilter`` is accepted and not applied: an imported QnA
    keeps no source."""
    filters = body.get("filters")
    if filters is None:
        return None
    if not isinstance(filters, dict):
        raise APIError(400, "invalid_value", "'filters' must be an object", "filters")
    metadata_part = filters.get("metadataFilter")
    if metadata_part is None:
        return None
    field = "filters.metadataFilter"
    if not isinstance(metadata_part, dict):
        raise APIError(400, "invalid_value", f"'{field}' must be an object", field)
    operation = metadata_part.get("logicalOperation") or "AND"
    if not isinstance(operation, str) or operation.upper() not in {"AND", "OR"}:
        raise APIError(
            400, "invalid_value", f"'{field}.logicalOperation' must be AND or OR", f"{field}.logicalOperation"
        )
    records = metadata_part.get("metadata") or []
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and "key" in r and "value" in r for r in records
    ):
        raise APIError(
            400,
            "invalid_value",
            f'\'{field}.metadata\' must be a list of {{"key", "value"}} objects',
            f"{field}.metadata",
        )
    return metadata_filter(
        [(r["key"], r["value"]) for r in records], f"{field}.metadata", any_of=operation.upper() == "OR"
    )


def _answer(engine: AnsweringEngine, intent: str, score: float) -> dict[str, Any]:
    info = engine.knowledge[intent]
    follow_ups = [f for f in info.follow_ups if f in engine.knowledge]
    return {
        "questions": [info.title or intent],
        "answer": info.answer,
        "confidenceScore": round(min(max(score, 0.0), 1.0), 4),
        "id": qna_id(intent),
        "source": "HelpLoop",
        "metadata": {**info.metadata, "intent": intent},
        "dialog": {
            "isContextOnly": False,
            "prompts": [
                {"displayOrder": order, "qnaId": qna_id(f), "displayText": engine.knowledge[f].title or f}
                for order, f in enumerate(follow_ups)
            ],
        },
    }


def _no_answer(text: str, score: float = 0.0) -> dict[str, Any]:
    return {
        "questions": [],
        "answer": text,
        "confidenceScore": score,
        "id": NO_ANSWER_ID,
        "source": "HelpLoop",
        "metadata": {},
        "dialog": {"isContextOnly": False, "prompts": []},
    }


def _answers(engine: AnsweringEngine, prediction: Prediction, text: str, top: int) -> list[dict[str, Any]]:
    known = [c for c in prediction.ranking if c.intent in engine.knowledge]
    if prediction.status == ANSWERED and prediction.intent in engine.knowledge:
        first = _answer(engine, str(prediction.intent), prediction.confidence)
        rest = [_answer(engine, c.intent, c.probability) for c in known if c.intent != prediction.intent]
        return [first, *rest][:top]
    if prediction.status == CLARIFY and prediction.suggestions:
        probability = {c.intent: c.probability for c in known}
        if prediction.vague:
            # A keyword message ("pin"): the model's probabilities would make the first choice look like a
            # sure answer to a client that takes the top one; each choice's share of the knowledge base's
            # uses of the words says how open the question is (bot.keywords).
            probability = dict(engine.keyword_shares(prediction, limit=len(engine.labels)))
        choices: list[Candidate] = [c for c in prediction.suggestions if c.intent in engine.knowledge]
        return sorted(
            (_answer(engine, c.intent, probability.get(c.intent, 0.0)) for c in choices),
            key=lambda answer: -float(answer["confidenceScore"]),
        )
    if prediction.status == SMALL_TALK:
        return [_no_answer(text, 1.0)]
    return [_no_answer(text)]  # hand over (or nothing to offer): Azure's "no good match"


@azure_qa.post("/language/:query-knowledgebases")
@limiter.limit(_limit)
def query_knowledgebases() -> Response:
    body = json_body()
    settings = state().settings
    top = _integer(body, "top", 1, low=1, high=MAX_TOP)
    threshold = _threshold(body)
    only = _filters(body)
    user = text_field(body, "userId", limit=64, required=False)
    # Named before answering, so that the QnA ids are looked up in the model this conversation is served by
    # (production or a canary, by a stable hash of it).
    session_id = external_session_id(user, "azure") if user else new_uuid()
    serving = state().models.state
    if serving.production is None:
        raise APIError(503, "model_unavailable", "the model is still loading; try again in a few seconds")
    engine, _arm = serving.engine_for(session_id)
    if body.get("qnaId") not in (None, ""):
        wanted = _integer(body, "qnaId", 0, low=1, high=0x7FFFFFFF)
        intent = next((i for i in engine.knowledge if qna_id(i) == wanted), None)
        if intent is None:
            raise APIError(404, "unknown_qna", f"no intent has QnA id {wanted}", "qnaId")
        message = f"/{intent}"  # as a clicked follow-up chip: that intent's answer, without guessing
    else:
        question = text_field(body, "question", limit=settings.max_message_length)
        assert question is not None
        follow_up = _prompt_typed(engine, body, question)
        message = f"/{follow_up}" if follow_up else question
    if to_live_chat(message, session_id) is not None:
        return jsonify({"answers": []})  # a person chats with this user now: the bot stays quiet
    said = answer_message(message, session_id, channel="azure", create_unknown_session=True, only=only)
    prediction, text = said.prediction, said.text
    answers = [a for a in _answers(engine, prediction, text, top) if a["confidenceScore"] >= threshold]
    # No answer above the client's threshold: Azure's default answer. Where the bot gave nothing from the
    # knowledge base (its handoff, a request for a person, a message off the topic, an answer asked for once
    # more than the limit: bot.repetition) it is what the chat says, the team's hours included; under an
    # answer or a "did you mean" too unsure for the client, the handoff line.
    unsure = prediction.status in (ANSWERED, CLARIFY) and not (prediction.off_topic or said.passed_on)
    fallback = settings.handoff_message if unsure else text
    if unsure and settings.team_schedule is not None:
        # As the chat's own handoff outside the team's hours: the line, then when the team is back.
        available = team_availability(db_session(), settings)
        if available.back is not None:
            fallback = f"{fallback} {away_text(settings, available.back)}"
    return jsonify({"answers": answers or [_no_answer(fallback)]})
