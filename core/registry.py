"""Model registry and turn log: domain functions, session first, keyword-only arguments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Conversation, Deployment, ModelVersion, Turn, utcnow


class NotFoundError(LookupError):
    """A row the caller named does not exist."""


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
    served_by: str = "production",
    shadow_prediction: dict[str, Any] | None = None,
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
        served_by=served_by,
        shadow_prediction=shadow_prediction,
    )
    session.add(turn)
    session.flush()
    return turn


def record_feedback(session: Session, *, turn_id: int, helpful: bool, comment: str | None = None) -> Turn:
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise NotFoundError(f"turn {turn_id} does not exist")
    turn.helpful = helpful
    turn.feedback_comment = comment
    turn.feedback_at = utcnow()
    session.flush()
    return turn


def get_conversation(session: Session, *, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFoundError(f"session {conversation_id} does not exist")
    return conversation


def request_handoff(session: Session, *, conversation_id: str) -> Conversation:
    conversation = get_conversation(session, conversation_id=conversation_id)
    if conversation.handoff_requested_at is None:
        conversation.handoff_requested_at = utcnow()
    session.flush()
    return conversation


def current_deployment(session: Session) -> Deployment | None:
    return session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(1)).first()


def model_by_version(session: Session, *, version: str) -> ModelVersion:
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is None:
        raise NotFoundError(f"model version {version} is not registered")
    return row


def set_deployment(
    session: Session,
    *,
    production_version: str,
    canary_version: str | None = None,
    canary_share: float = 0.0,
    shadow_version: str | None = None,
    actor: str,
    reason: str,
) -> Deployment:
    """Record what serves traffic from now on (every web worker follows the newest row)."""
    for version in filter(None, (production_version, canary_version, shadow_version)):
        model_by_version(session, version=version)
    if not 0.0 <= canary_share <= 1.0:
        raise ValueError(f"canary_share must be in [0, 1], not {canary_share}")
    if canary_version is None and canary_share:
        raise ValueError("canary_share needs a canary_version")
    row = Deployment(
        production_version=production_version,
        canary_version=canary_version,
        canary_share=canary_share,
        shadow_version=shadow_version,
        actor=actor,
        reason=reason[:500],
    )
    session.add(row)
    session.flush()
    return row


def serving_plan(session: Session) -> dict[str, Any] | None:
    """Versions and bundle paths to serve: the newest deployment, or else the newest registered model."""
    deployment = current_deployment(session)
    if deployment is None:
        latest = latest_model_version(session)
        if latest is None:
            return None
        return {
            "production": (latest.version, latest.bundle_path),
            "canary": None,
            "canary_share": 0.0,
            "shadow": None,
            "deployment_id": None,
        }

    def locate(version: str | None) -> tuple[str, str] | None:
        if version is None:
            return None
        return version, model_by_version(session, version=version).bundle_path

    return {
        "production": locate(deployment.production_version),
        "canary": locate(deployment.canary_version),
        "canary_share": deployment.canary_share,
        "shadow": locate(deployment.shadow_version),
        "deployment_id": deployment.id,
    }
