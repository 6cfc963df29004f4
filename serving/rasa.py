"""Rasa-compatible endpoints, so existing Rasa widgets and scripts work unchanged."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.api import (
    answer_message,
    external_session_id,
    json_body,
    reply_choices,
    text_field,
    to_live_chat,
)
from serving.app import limiter, state
from serving.errors import APIError

rasa = Blueprint("rasa", __name__)


def _limit() -> str:
    return state().settings.chat_rate_limit


@rasa.post("/webhooks/rest/webhook")
@limiter.limit(_limit)
def rest_webhook() -> Response:
    """Rasa REST channel: {"sender", "message"} -> [{"recipient_id", "text", "buttons"?}]."""
    body = json_body()
    sender = text_field(body, "sender", limit=64)
    message = text_field(body, "message", limit=state().settings.max_message_length)
    assert sender is not None and message is not None
    sender_id = external_session_id(sender, "rasa")  # Rasa senders are free-form; ours are session ids
    if to_live_chat(message, sender_id) is not None:
        return jsonify([])  # a person chats with this user now: the message is theirs, the bot stays quiet
    said = answer_message(message, sender_id, channel="rasa", create_unknown_session=True)
    reply: dict[str, object] = {"recipient_id": sender, "text": said.text}
    buttons = reply_choices(said.prediction, said.asked_again, state().settings)
    if buttons:
        reply["buttons"] = buttons
    return jsonify([reply])


@rasa.post("/model/parse")
@limiter.limit(_limit)
def parse() -> Response:
    """Rasa NLU parse: {"text"} -> {"text", "intent", "intent_ranking", "entities"} (not logged as a turn)."""
    body = json_body()
    text = text_field(body, "text", limit=state().settings.max_message_length)
    assert text is not None
    serving = state().models.state
    if serving.production is None:
        raise APIError(503, "model_unavailable", "the model is still loading; try again in a few seconds")
    engine = serving.production
    prediction = engine.predict(text)
    ranking = [{"name": c.intent, "confidence": round(c.probability, 6)} for c in prediction.ranking]
    intent = {"name": prediction.top_intent, "confidence": round(prediction.confidence, 6)}
    if prediction.vague:
        # A keyword message ("pin") the knowledge base shares among intents: confidences are the shares of
        # its words' uses (bot.keywords), so a fallback threshold sees how open it is, as the chat does.
        shares = dict(engine.keyword_shares(prediction, limit=len(engine.labels)))
        ordered = sorted(prediction.ranking, key=lambda c: -shares.get(c.intent, 0.0))
        ranking = [{"name": c.intent, "confidence": round(shares.get(c.intent, 0.0), 6)} for c in ordered]
        intent = dict(ranking[0])
    return jsonify(
        {
            "text": text,
            "intent": intent,
            "intent_ranking": ranking,
            "entities": [],
        }
    )
