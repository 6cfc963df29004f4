"""The review workforce: how much each reviewer judged, how well, how fast, and what the loop costs in
people's time (what Amazon A2I and Mechanical Turk report as time per task, and Argilla as annotator metrics).

- **Time** is the review page's active time (visible, some input in the last minute), capped by the claim's
  age measured on the server, from taking the item to answering it (a reload keeps the claim; a skip counts
  nothing); without JavaScript, the claim's age (``review.held_for``). Medians, because an odd long item
  must not make a reviewer look slow for a week.
- **Quality** is the reviewer's agreement with the final label of items that resolved, and their accuracy on
  gold (all time: the counters that suspend).
- **A fast marker** flags a median under ``FAST_SECONDS``: faster than a person reads a question and picks
  one of dozens of intents. It only points; the gold checks decide suspensions.
- **Effort**: reviewer hours in the window, and the time one resolved item cost (mean time per judgement ×
  judgements per resolved item, gold checks and escalations included): the price of a verified label.
- **A reviewer's own record**: their answers, newest first, each with the label the item settled on once it
  did, so a reviewer learns where they differ from the crowd. Check questions are left out: their keys stay
  secret after the practice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from core.models import Judgement, ReviewItem, User, as_utc

FAST_SECONDS = 3.0
RATE_AFTER_SECONDS = 60.0  # an hourly rate from less measured work than this is noise


def duration_text(seconds: float) -> str:
    """42 s, 12.5 min, 3.2 h."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class ReviewerPerformance:
    username: str
    role: str
    status: str  # active | suspended | deactivated
    suspended_reason: str | None
    judgements: int  # in the window
    resolved: int  # of those, on real items that have resolved
    agreed: int  # of those, the same label as the resolution
    gold_answered: int  # all time
    gold_correct: int
    timed: int  # judgements in the window with a measured time
    work_seconds: float
    median_seconds: float | None
    last_judged_at: datetime | None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.resolved if self.resolved else None

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None

    @property
    def per_hour(self) -> float | None:
        """Judgements per hour of time spent on them (once a minute of work is measured)."""
        if self.work_seconds < RATE_AFTER_SECONDS:
            return None
        return self.timed / self.work_seconds * 3600.0

    @property
    def fast(self) -> bool:
        return self.median_seconds is not None and self.median_seconds < FAST_SECONDS


@dataclass(frozen=True)
class ReviewEffort:
    since: datetime
    judgements: int
    timed: int
    work_seconds: float
    median_seconds: float | None
    resolved_items: int  # real items resolved in the window

    @property
    def hours(self) -> float:
        return self.work_seconds / 3600.0

    @property
    def seconds_per_resolved(self) -> float | None:
        """People's time one resolved item cost: the mean time of a judgement (timed ones) times the
        judgements given per item resolved (all of them, gold checks and unresolved items included)."""
        if not self.timed or not self.resolved_items:
            return None
        return self.work_seconds / self.timed * self.judgements / self.resolved_items


@dataclass(frozen=True)
class Workforce:
    people: list[ReviewerPerformance]
    effort: ReviewEffort


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def workforce(session: Session, *, since: datetime) -> Workforce:
    """Every reviewer (and each operator who judged in the window), busiest first, and the totals."""
    agreed = and_(
        ReviewItem.is_gold.is_(False),
        ReviewItem.status == "resolved",
        ReviewItem.resolved_label == Judgement.label,
    )
    counts = {
        row.reviewer_id: row
        for row in session.execute(
            select(
                Judgement.reviewer_id,
                func.count().label("judgements"),
                func.sum(
                    case((and_(ReviewItem.is_gold.is_(False), ReviewItem.status == "resolved"), 1), else_=0)
                ).label("resolved"),
                func.sum(case((agreed, 1), else_=0)).label("agreed"),
                func.count(Judgement.seconds).label("timed"),
                func.coalesce(func.sum(Judgement.seconds), 0.0).label("work_seconds"),
                func.max(Judgement.created_at).label("last"),
            )
            .join(ReviewItem, ReviewItem.id == Judgement.item_id)
            .where(Judgement.created_at >= since)
            .group_by(Judgement.reviewer_id)
        )
    }
    times: dict[int, list[float]] = {}
    for reviewer_id, seconds in session.execute(
        select(Judgement.reviewer_id, Judgement.seconds).where(
            Judgement.created_at >= since, Judgement.seconds.is_not(None)
        )
    ):
        times.setdefault(reviewer_id, []).append(float(seconds or 0.0))
    users = session.scalars(
        select(User).where(or_(User.role == "reviewer", User.id.in_(list(counts)))).order_by(User.username)
    ).all()
    people = []
    for user in users:
        row = counts.get(user.id)
        status = "deactivated" if not user.active else ("suspended" if user.suspended_at else "active")
        people.append(
            ReviewerPerformance(
                username=user.username,
                role=user.role,
                status=status,
                suspended_reason=user.suspended_reason if user.suspended_at else None,
                judgements=int(row.judgements) if row else 0,
                resolved=int(row.resolved or 0) if row else 0,
                agreed=int(row.agreed or 0) if row else 0,
                gold_answered=user.gold_answered,
                gold_correct=user.gold_correct,
                timed=int(row.timed) if row else 0,
                work_seconds=float(row.work_seconds) if row else 0.0,
                median_seconds=_median(times.get(user.id, [])),
                last_judged_at=row.last if row else None,
            )
        )
    people.sort(key=lambda p: (-p.judgements, p.username))
    resolved_items = session.scalar(
        select(func.count())
        .select_from(ReviewItem)
        .where(
            ReviewItem.is_gold.is_(False),
            ReviewItem.status == "resolved",
            ReviewItem.resolved_at >= since,
        )
    )
    effort = ReviewEffort(
        since=since,
        judgements=sum(int(row.judgements) for row in counts.values()),
        timed=sum(int(row.timed) for row in counts.values()),
        work_seconds=sum(float(row.work_seconds) for row in counts.values()),
        median_seconds=_median([s for values in times.values() for s in values]),
        resolved_items=int(resolved_items or 0),
    )
    return Workforce(people=people, effort=effort)


@dataclass(frozen=True)
class AnswerRecord:
    """One of a reviewer's answers and what became of the item."""

    item_id: int
    text: str
    label: str
    new_intent_text: str | None
    answered_at: datetime
    status: str  # pending | resolved | escalated
    settled: str | None  # the item's label once resolved

    @property
    def agreed(self) -> bool | None:
        return None if self.settled is None else self.settled == self.label


def answer_record(
    session: Session, *, reviewer_id: int, limit: int = 50, offset: int = 0
) -> tuple[list[AnswerRecord], int]:
    """The reviewer's answers on real items (never check questions), newest first: (``limit`` of them from
    ``offset``, how many there are in all)."""
    mine = and_(Judgement.reviewer_id == reviewer_id, ReviewItem.is_gold.is_(False))
    total = session.scalar(
        select(func.count())
        .select_from(Judgement)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(mine)
    )
    rows = session.execute(
        select(Judgement, ReviewItem.text, ReviewItem.status, ReviewItem.resolved_label)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(mine)
        .order_by(Judgement.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    records = [
        AnswerRecord(
            item_id=judgement.item_id,
            text=text,
            label=judgement.label,
            new_intent_text=judgement.new_intent_text,
            answered_at=as_utc(judgement.created_at),
            status=status,
            settled=resolved_label if status == "resolved" else None,
        )
        for judgement, text, status, resolved_label in rows
    ]
    return records, int(total or 0)
