"""Terminal chat: the same engine and turn log as the web channel, read from stdin."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, TextIO

from bot.engine import CLARIFY, HANDOFF, AnsweringEngine, Prediction
from bot.handoff import ASKED_FOR_PERSON
from bot.message_rules import read_message
from bot.small_talk import small_talk_prediction
from core.settings import Settings

# A typed request for a person: the web chat hands the conversation to the team; here nobody can take over.
NOBODY_HERE = (
    "[asked for a person: the web chat would hand this conversation to your team; the terminal cannot]"
)


def render(prediction: Prediction, settings: Settings) -> str:
    if prediction.status == CLARIFY:
        choices = "\n".join(f"  {i}. {c.title}" for i, c in enumerate(prediction.suggestions, start=1))
        return f"Did you mean:\n{choices}\n(type a number to choose)"
    if prediction.status == HANDOFF:
        return settings.handoff_message
    text = prediction.answer or f"[{prediction.intent}]"
    if prediction.suggestions:
        text += "\nRelated: " + "; ".join(c.title for c in prediction.suggestions)
    return text


def run_terminal_chat(
    engine: AnsweringEngine,
    *,
    database: Any = None,
    settings: Settings,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    from core.registry import get_or_create_conversation, log_turn, record_choice

    # Looked up per call, not bound at import: whoever swaps sys.stdin/stdout (a test runner) is followed.
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    conversation_id: str | None = None
    pending: Prediction | None = None
    stdout.write(f"HelpLoop ({engine.version}, {engine.runtime}). Ask a question; an empty line quits.\n")
    while True:
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
        if not line or not line.strip():
            break
        text = line.strip()[: settings.max_message_length]
        if pending is not None and text.isdigit() and 1 <= int(text) <= len(pending.suggestions):
            chosen = pending.suggestions[int(text) - 1].intent
            stdout.write(engine.knowledge[chosen].answer + "\n")
            pending = None
            if database is not None and conversation_id is not None:
                with database.session() as session:  # the customer's answer to "did you mean", as on the web
                    record_choice(session, conversation_id=conversation_id, intent=chosen)
            continue
        reading = read_message(text, **settings.message_rules)
        if reading.small_talk is not None:
            reply = settings.small_talk_reply(reading.small_talk)
            prediction = small_talk_prediction(text, reply, engine.version)
        else:
            prediction = engine.predict(reading.question)
        status = prediction.status
        if reading.asks_for_person:  # logged as the web chat logs it: the candidates, no answer
            prediction = dataclasses.replace(prediction, intent=None, answer="", suggestions=[])
            status = ASKED_FOR_PERSON
        pending = prediction if status == CLARIFY else None
        stdout.write((NOBODY_HERE if reading.asks_for_person else render(prediction, settings)) + "\n")
        if database is not None:
            with database.session() as session:
                conversation = get_or_create_conversation(
                    session, conversation_id=conversation_id, channel="terminal"
                )
                conversation_id = conversation.id
                log_turn(
                    session,
                    conversation_id=conversation.id,
                    user_text=text,
                    status=status,
                    intent=prediction.intent,
                    answer=prediction.answer,
                    confidence=min(max(prediction.confidence, 0.0), 1.0),
                    candidates=[c.to_dict() for c in prediction.ranking],
                    member_scores=prediction.member_scores,
                    model_version=prediction.model_version,
                    latency_ms=prediction.latency_ms,
                    suggested=[c.intent for c in prediction.suggestions],
                )
