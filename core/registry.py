"""Model registry and turn log: domain functions, session first, keyword-only arguments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Conversation, ModelVersion, Turn, utcnow

TURN_STATUSES = ("answered", "clarify", "handoff")


def register_model_version(
    session: Session,
    *,
    version: str,
    bundle_path: str,
    data_hash: str,
    metrics: dict[str, Any],
    kb_version_id: int | None,
) -> ModelVersion:
    row = ModelVersion(
        version=version,
        bundle_path=bundle_path,
        data_hash=data_hash,
        metrics=metrics,
        kb_version_id=kb_version_id,
    )
    session.add(row)
    session.flush()
    return row


def latest_model_version(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()


def get_or_create_conversation(
    session: Session, *, conversation_id: str | None, channel: str
) -> Conversation:
    if conversation_id:
        existing = session.get(Conversation, conversation_id)
        if existing is not None:
            existing.last_activity_at = utcnow()
            return existing
        conversation = Conversation(id=conversation_id, channel=channel)
    else:
        conversation = Conversation(channel=channel)
    session.add(conversation)
    session.flush()
    return conversation


def log_turn(
    session: Session,
    *,
    conversation_id: str,
    user_text: str,
    status: str,
    intent: str | None,
    answer: str,
    confidence: float,
    candidates: list[dict[str, Any]],
    member_scores: dict[str, Any],
    model_version: str,
    latency_ms: float,
) -> Turn:
    if status not in TURN_STATUSES:
        raise ValueError(f"status must be one of {TURN_STATUSES}, not {status!r}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0, 1], not {confidence}")
    turn = Turn(
        conversation_id=conversation_id,
        user_text=user_text,
        status=status,
        intent=intent,
        answer=answer,
        confidence=confidence,
        candidates=candidates,
        member_scores=member_scores,
        model_version=model_version,
        latency_ms=latency_ms,
    )
    session.add(turn)
    session.flush()
    return turn
