"""Terminal chat: the same engine and turn log as the web channel, read from stdin."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bot.engine import CLARIFY, HANDOFF, AnsweringEngine, Prediction
from bot.small_talk import SmallTalk, read_small_talk, small_talk_prediction
from core.settings import Settings


def render(prediction: Prediction) -> str:
    if prediction.status == CLARIFY:
        choices = "\n".join(f"  {i}. {c.title}" for i, c in enumerate(prediction.suggestions, start=1))
        return f"Did you mean:\n{choices}\n(type a number to choose)"
    if prediction.status == HANDOFF:
        return "I'm not sure I understood. I'll pass you to a person on our team."
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
        talk = read_small_talk(text) if settings.small_talk else SmallTalk(None, text)
        if talk.kind is not None:
            prediction = small_talk_prediction(text, settings.small_talk_reply(talk.kind), engine.version)
        else:
            prediction = engine.predict(talk.question)
        pending = prediction if prediction.status == CLARIFY else None
        stdout.write(render(prediction) + "\n")
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
                    status=prediction.status,
                    intent=prediction.intent,
                    answer=prediction.answer,
                    confidence=min(max(prediction.confidence, 0.0), 1.0),
                    candidates=[c.to_dict() for c in prediction.ranking],
                    member_scores=prediction.member_scores,
                    model_version=prediction.model_version,
                    latency_ms=prediction.latency_ms,
                    suggested=[c.intent for c in prediction.suggestions],
                )
