"""Operator overview: traffic, review queue, reviewers and the verified pairs ready for training."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select

from admin_ui.setup import require_role
from core.models import ReviewItem, Turn, User, VerifiedPair

operator = Blueprint("operator", __name__, url_prefix="/operator", template_folder="templates")


@operator.get("/")
@require_role("operator")
def overview() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        statuses = dict(session.execute(select(Turn.status, func.count()).group_by(Turn.status)).all())
        queue = dict(
            session.execute(
                select(ReviewItem.status, func.count())
                .where(ReviewItem.is_gold.is_(False))
                .group_by(ReviewItem.status)
            ).all()
        )
        reviewers = [
            {
                "username": u.username,
                "role": u.role,
                "gold": f"{u.gold_correct}/{u.gold_answered}",
                "suspended": u.suspended_reason,
            }
            for u in session.scalars(select(User).order_by(User.username))
        ]
        pairs = [
            {"text": p.text, "intent": p.intent, "weight": p.weight}
            for p in session.scalars(select(VerifiedPair).order_by(VerifiedPair.id.desc()).limit(100))
        ]
    serving = helploop.models.state
    total = sum(statuses.values()) or 1
    bars = [
        (name, statuses.get(name, 0), statuses.get(name, 0) / total)
        for name in ("answered", "clarify", "handoff")
    ]
    return render_template(
        "admin/operator.html",
        bars=bars,
        total=sum(statuses.values()),
        queue=queue,
        reviewers=reviewers,
        pairs=pairs,
        production=serving.production.version if serving.production else None,
        canary=serving.canary.version if serving.canary else None,
        shadow=serving.shadow.version if serving.shadow else None,
    )
