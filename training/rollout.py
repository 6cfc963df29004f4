"""Rollout decisions: shadow, canary, promote, rollback, and the precision the bot answers at. One function
for the CLI and the operator pages; every change is a new row (who, when, why), and web workers follow the
newest row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.calibration import PRECISION_OPTIONS, Gate, precision_key
from core.models import AnswerPolicy, Deployment, ModelVersion
from core.registry import (
    NotFoundError,
    current_deployment,
    latest_model_version,
    model_by_version,
    record_answer_policy,
    set_deployment,
)

# end_canary / end_shadow take the canary or the shadow out and leave production as it is (rollback changes
# production, so it is not the way to stop a canary).
ACTIONS = ("shadow", "canary", "promote", "rollback", "end_canary", "end_shadow")


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


def rollback_target(session: Session, now_serving: str | None) -> tuple[str | None, str]:
    """The model a rollback would serve (the newest earlier production model whose bundle is still there),
    or None and why there is none."""
    history = session.scalars(select(Deployment.production_version).order_by(Deployment.id.desc()))
    pruned = set(session.scalars(select(ModelVersion.version).where(ModelVersion.pruned_at.is_not(None))))
    earlier = [version for version in history if version != now_serving]
    previous = next((v for v in earlier if v not in pruned), None)
    if previous is not None:
        return previous, ""
    return None, "nothing to roll back to: no earlier production model in the deployment history" + (
        " whose bundle is still there (pruned)" if earlier else ""
    )


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
    if action in ("end_canary", "end_shadow"):
        arm = action.removeprefix("end_")
        if base[f"{arm}_version"] is None:
            raise RolloutError(f"no {arm} is serving")
        change = {**base, f"{arm}_version": None}
        if arm == "canary":
            change["canary_share"] = 0.0
    elif action == "rollback":
        previous, why_not = rollback_target(session, base["production_version"])
        if previous is None:
            raise RolloutError(why_not)
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


def set_answer_precision(
    session: Session, *, target_precision: float | None, actor: str, reason: str
) -> AnswerPolicy:
    """How sure the bot must be to answer, for every serving model, without retraining: each model's gate is
    the one fitted to that precision on its held-out rows (built with every model, ``PRECISION_OPTIONS``).
    None goes back to the gates the models were built with. Audited like the rollout actions."""
    if not reason.strip():
        raise RolloutError("give a reason (it is kept in the audit trail)")
    if target_precision is not None and round(target_precision, 2) not in PRECISION_OPTIONS:
        choices = ", ".join(f"{p:.2f}" for p in PRECISION_OPTIONS)
        raise RolloutError(f"precision {target_precision} is not offered; choose one of {choices}")
    value = None if target_precision is None else round(target_precision, 2)
    return record_answer_policy(session, target_precision=value, actor=actor, reason=reason)


@dataclass(frozen=True)
class PrecisionOption:
    """One precision the bot can answer at, with what the model measured for it on its held-out rows."""

    target: float
    threshold: float
    margin: float
    coverage: float  # share of held-out questions it answers
    precision: float | None  # measured precision on those
    built: bool  # the precision the model was built for


def precision_options(bundle_path: str | Path) -> list[PrecisionOption]:
    """The gates a model bundle holds, read from its manifest (no model is loaded). Empty for bundles built
    before gate options existed."""
    manifest_file = Path(bundle_path) / "manifest.json"
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    built = (manifest.get("gate") or {}).get("target_precision")
    gates = [Gate.from_config(config) for config in (manifest.get("gate_options") or {}).values()]
    return sorted(
        (
            PrecisionOption(
                target=gate.target_precision,
                threshold=gate.threshold,
                margin=gate.margin,
                coverage=float(gate.fitted.get("coverage") or 0.0),
                precision=gate.fitted.get("precision"),
                built=built is not None and precision_key(gate.target_precision) == precision_key(built),
            )
            for gate in gates
        ),
        key=lambda o: o.target,
    )
