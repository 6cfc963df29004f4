"""Rollout decisions: shadow, canary, promote, rollback. One function for the CLI and the operator pages;
every change is a new deployment row (who, when, why), and web workers follow the newest row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Deployment
from core.registry import (
    NotFoundError,
    current_deployment,
    latest_model_version,
    model_by_version,
    set_deployment,
)

ACTIONS = ("shadow", "canary", "promote", "rollback")


class RolloutError(ValueError):
    pass


def describe(row: Deployment | None) -> str:
    if row is None:
        return "no deployment recorded: the newest built model serves"
    canary = f", canary {row.canary_version} ({row.canary_share:.0%})" if row.canary_version else ""
    shadow = f", shadow {row.shadow_version}" if row.shadow_version else ""
    return f"production {row.production_version}{canary}{shadow} (by {row.actor}: {row.reason})"


def gate_decision(session: Session, version: str) -> dict[str, Any]:
    return (model_by_version(session, version=version).metrics or {}).get("gate") or {}


def apply_action(
    session: Session,
    *,
    action: str,
    actor: str,
    reason: str,
    version: str | None = None,
    share: float = 0.1,
    override_reason: str | None = None,
) -> Deployment:
    if action not in ACTIONS:
        raise RolloutError(f"unknown action {action!r}; choose from {', '.join(ACTIONS)}")
    if not reason.strip():
        raise RolloutError("give a reason (it is kept in the audit trail)")
    current = current_deployment(session)
    base: dict[str, Any] = {
        "production_version": current.production_version if current else None,
        "canary_version": current.canary_version if current else None,
        "canary_share": current.canary_share if current else 0.0,
        "shadow_version": current.shadow_version if current else None,
    }
    if base["production_version"] is None:
        latest = latest_model_version(session)
        if latest is None:
            raise RolloutError("no model has been built yet")
        base["production_version"] = latest.version
    change: dict[str, Any]
    if action == "rollback":
        history = session.scalars(select(Deployment).order_by(Deployment.id.desc())).all()
        now_serving = base["production_version"]
        previous = next((r.production_version for r in history if r.production_version != now_serving), None)
        if previous is None:
            raise RolloutError(
                "nothing to roll back to: no earlier production model in the deployment history"
            )
        change = {
            "production_version": previous,
            "canary_version": None,
            "canary_share": 0.0,
            "shadow_version": None,
        }
    else:
        if not version:
            raise RolloutError(f"{action} needs a model version")
        try:
            gate = gate_decision(session, version)
        except NotFoundError as exc:
            raise RolloutError(str(exc)) from None
        if action in ("canary", "promote") and gate.get("decision") == "worse":
            if not (override_reason or "").strip():
                difference = gate.get("difference", {})
                raise RolloutError(
                    f"the promotion gate found {version} worse than production (accuracy difference "
                    f"{difference.get('accuracy', 0):+.4f}, 95% CI {difference.get('ci95')}); "
                    "give an override reason to deploy it anyway"
                )
            reason = f"{reason} [gate override: {override_reason}]"
        if action == "shadow":
            change = {**base, "shadow_version": version}
        elif action == "canary":
            if not 0.0 < share <= 1.0:
                raise RolloutError("canary share must be in (0, 1]")
            change = {**base, "canary_version": version, "canary_share": share}
        else:
            change = {
                "production_version": version,
                "canary_version": None,
                "canary_share": 0.0,
                "shadow_version": None,
            }
    try:
        return set_deployment(session, **change, actor=actor, reason=reason)
    except (NotFoundError, ValueError) as exc:
        raise RolloutError(str(exc)) from None
