"""What live traffic says about a model: the outcomes of the turns a model answered, per deployment arm and
time window, and two comparisons operators act on.

- **Canary against production**, since the canary started: the sessions are split by a stable hash, so the
  two arms see the same kind of traffic in the same hours, and a difference is the model's. Promote when the
  canary answers more without more thumbs-down; end it when it does worse (the canary guard, below, does
  that by itself).
- **Before and after each promotion**: production's turns in the days before against the days after. Traffic
  can change between the two windows, so this says whether the retraining paid off on what customers asked,
  not why.

Per outcome, the difference of the two shares with a 95 % interval (Newcombe's hybrid score interval, built
from the two Wilson intervals: sensible at small counts and near 0 or 1), and a verdict only when the
interval excludes 0. Audited precision counts the random audit sample's resolved turns of each arm and window.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.handoff import OFF_TOPIC
from core.models import Deployment, ReviewItem, ReviewItemTurn, Turn, as_utc, utcnow
from core.registry import current_deployment, set_deployment
from crowd_feedback.quality import wilson_interval

PRODUCTION, CANARY = "production", "canary"
Z95 = 1.96
GUARD_ACTOR = "canary-guard"
# The canary guard acts on its own and looks again every minute. A fixed 99 % interval checked that often
# ends about one canary in seven that is exactly as good as production (bench/canary_guard.py), so the
# guard uses an always-valid test instead: Robbins' normal-mixture boundary (Howard et al. 2021), which
# holds however often one looks. alpha 0.01 for each of three outcomes: at most a 3 % chance of ever ending
# a canary as good as production. RHO sets where the boundary is tightest (effective questions per arm).
GUARD_OUTCOMES = ("answered or picked", "handoffs", "thumbs-down")
GUARD_ALPHA = 0.01
GUARD_RHO = 100.0


def always_valid_z(effective_n: float, *, alpha: float = GUARD_ALPHA, rho: float = GUARD_RHO) -> float:
    """The |z| a difference must pass at ``effective_n`` (1 / (1/n1 + 1/n2)) for the normal-mixture
    confidence sequence: sqrt((1 + rho/n) log((n + rho) / (rho alpha^2)))."""
    return math.sqrt((1.0 + rho / effective_n) * math.log((effective_n + rho) / (rho * alpha**2)))


@dataclass(frozen=True)
class Outcomes:
    """The turns one model answered on one arm in one window (a clicked chip's own turn is no question)."""

    version: str | None
    since: datetime
    until: datetime
    questions: int = 0
    answered: int = 0
    clarify: int = 0
    picked: int = 0  # clarify turns the customer answered by clicking a choice
    handoff: int = 0
    rated: int = 0  # answered turns with a thumbs up or down
    unhelpful: int = 0
    audited: int = 0  # audited answered turns whose review item resolved
    audited_correct: int = 0


@dataclass(frozen=True)
class Difference:
    """candidate − baseline for one outcome; ``verdict`` only when the interval excludes 0."""

    outcome: str
    higher_is_better: bool
    baseline: tuple[int, int]  # (count, out of)
    candidate: tuple[int, int]

    @staticmethod
    def _share(pair: tuple[int, int]) -> float | None:
        return pair[0] / pair[1] if pair[1] else None

    @property
    def baseline_share(self) -> float | None:
        return self._share(self.baseline)

    @property
    def candidate_share(self) -> float | None:
        return self._share(self.candidate)

    @property
    def difference(self) -> float | None:
        a, b = self.baseline_share, self.candidate_share
        return None if a is None or b is None else b - a

    def interval_at(self, z: float) -> tuple[float, float] | None:
        if not self.baseline[1] or not self.candidate[1]:
            return None
        return difference_interval(*self.baseline, *self.candidate, z=z)

    def verdict_at(self, z: float) -> str:
        interval = self.interval_at(z)
        if interval is None:
            return "no data"
        low, high = interval
        if low <= 0.0 <= high:
            return "no clear difference"
        up = low > 0.0
        return "better" if up == self.higher_is_better else "worse"

    @property
    def z(self) -> float | None:
        """candidate − baseline over its standard error under "no difference" (pooled), signed so that a
        positive z is better; None without data on both sides or without variation."""
        (x1, n1), (x2, n2) = self.baseline, self.candidate
        if not n1 or not n2:
            return None
        pooled = (x1 + x2) / (n1 + n2)
        variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
        if variance <= 0.0:
            return None
        z = (x2 / n2 - x1 / n1) / math.sqrt(variance)
        return z if self.higher_is_better else -z

    @property
    def effective_n(self) -> float:
        n1, n2 = self.baseline[1], self.candidate[1]
        return 1.0 / (1.0 / n1 + 1.0 / n2) if n1 and n2 else 0.0

    def worse_always_valid(self, *, alpha: float = GUARD_ALPHA, rho: float = GUARD_RHO) -> bool:
        z = self.z
        return z is not None and -z > always_valid_z(self.effective_n, alpha=alpha, rho=rho)

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.interval_at(Z95)

    @property
    def verdict(self) -> str:
        return self.verdict_at(Z95)


@dataclass(frozen=True)
class Comparison:
    kind: str  # canary | promotion
    baseline: Outcomes
    candidate: Outcomes
    at: datetime  # when the canary started, or the promotion

    @property
    def differences(self) -> list[Difference]:
        a, b = self.baseline, self.candidate
        return [
            Difference("answered", True, (a.answered, a.questions), (b.answered, b.questions)),
            Difference(
                "answered or picked",
                True,
                (a.answered + a.picked, a.questions),
                (b.answered + b.picked, b.questions),
            ),
            Difference("handoffs", False, (a.handoff, a.questions), (b.handoff, b.questions)),
            Difference("thumbs-down", False, (a.unhelpful, a.rated), (b.unhelpful, b.rated)),
            Difference(
                "audited precision", True, (a.audited_correct, a.audited), (b.audited_correct, b.audited)
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        def window(o: Outcomes) -> dict[str, Any]:
            return {
                "version": o.version,
                "since": o.since.isoformat(),
                "until": o.until.isoformat(),
                "questions": o.questions,
                "answered": o.answered,
                "clarify": o.clarify,
                "picked": o.picked,
                "handoff": o.handoff,
                "rated": o.rated,
                "thumbs_down": o.unhelpful,
                "audited": o.audited,
                "audited_correct": o.audited_correct,
            }

        return {
            "kind": self.kind,
            "at": self.at.isoformat(),
            "baseline": window(self.baseline),
            "candidate": window(self.candidate),
            "differences": [
                {
                    "outcome": d.outcome,
                    "baseline": d.baseline_share,
                    "candidate": d.candidate_share,
                    "difference": d.difference,
                    "interval": list(d.interval) if d.interval else None,
                    "verdict": d.verdict,
                }
                for d in self.differences
            ],
        }

    @property
    def worse(self) -> list[str]:
        return [d.outcome for d in self.differences if d.verdict == "worse"]

    @property
    def better(self) -> list[str]:
        return [d.outcome for d in self.differences if d.verdict == "better"]


def difference_interval(x1: int, n1: int, x2: int, n2: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of p2 − p1 (Newcombe 1998, method 10: from the two Wilson score intervals)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p2 - p1
    return (
        d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


def outcomes(
    session: Session, *, served_by: str, version: str | None, since: datetime, until: datetime | None = None
) -> Outcomes:
    """Two grouped queries: the turns by status (with thumbs and picks), and the resolved audits. A clicked
    chip's own turn is logged on its own arm (``suggestion``), so it never counts as a question here."""
    until = until or utcnow()
    where = [Turn.served_by == served_by, Turn.created_at >= since, Turn.created_at < until]
    if version is not None:
        where.append(Turn.model_version == version)
    counts: dict[str, int] = {"answered": 0, "clarify": 0, "handoff": 0}
    rated = unhelpful = picked = 0
    for status, count, rated_n, unhelpful_n, picked_n in session.execute(
        select(
            Turn.status,
            func.count(),
            func.sum(case((Turn.helpful.is_not(None), 1), else_=0)),
            func.sum(case((Turn.helpful.is_(False), 1), else_=0)),
            func.sum(case((Turn.chosen_intent.is_not(None), 1), else_=0)),
        )
        .where(*where)
        .group_by(Turn.status)
    ):
        if status == OFF_TOPIC:
            status = "handoff"  # not answered: a model that declines more as off topic must not look better
        if status not in counts:
            continue
        counts[status] += int(count)
        if status == "answered":
            rated, unhelpful = int(rated_n or 0), int(unhelpful_n or 0)
        if status == "clarify":
            picked = int(picked_n or 0)
    audited = audited_correct = 0
    for intent, label in session.execute(
        select(Turn.intent, ReviewItem.resolved_label)
        .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
        .join(ReviewItem, ReviewItem.id == ReviewItemTurn.item_id)
        .where(
            *where,
            ReviewItemTurn.reason.like("%audit%"),
            Turn.status == "answered",
            ReviewItem.status == "resolved",
            ReviewItem.is_gold.is_(False),
        )
    ):
        audited += 1
        audited_correct += int(label == intent)
    return Outcomes(
        version=version,
        since=since,
        until=until,
        questions=sum(counts.values()),
        answered=counts["answered"],
        clarify=counts["clarify"],
        picked=picked,
        handoff=counts["handoff"],
        rated=rated,
        unhelpful=unhelpful,
        audited=audited,
        audited_correct=audited_correct,
    )


def canary_comparison(session: Session, *, now: datetime | None = None) -> Comparison | None:
    """The canary in force against production, on each arm's own turns since the canary started (the first
    deployment row of the unbroken run with this canary and this production model)."""
    row = current_deployment(session)
    if row is None or row.canary_version is None:
        return None
    started = row.created_at
    for earlier in session.scalars(
        select(Deployment).where(Deployment.id < row.id).order_by(Deployment.id.desc())
    ):
        if (
            earlier.canary_version != row.canary_version
            or earlier.production_version != row.production_version
        ):
            break
        started = earlier.created_at
    now = now or utcnow()
    return Comparison(
        kind=CANARY,
        baseline=outcomes(
            session, served_by=PRODUCTION, version=row.production_version, since=started, until=now
        ),
        candidate=outcomes(session, served_by=CANARY, version=row.canary_version, since=started, until=now),
        at=as_utc(started),
    )


PROMOTION_WINDOW_DAYS = 7
EFFECTS_TTL_SECONDS = 60.0
# (database, newest deployment id) -> (monotonic expiry, the before/after comparisons). The windows are days
# long and the Runs page refreshes every 3 s while a run trains: a minute-old figure is fine, a fresh scan of
# weeks of turns per refresh is not (about 0.6 s at 300,000 turns on SQLite). A new deployment row is a new
# key. Per process; the Runs page and the admin API share it.
_effects_cache: dict[tuple[str, int | None], tuple[float, list[Comparison]]] = {}
_effects_lock = threading.Lock()


def cached_effects(session: Session, newest_deployment: int | None) -> list[Comparison]:
    """``promotion_effects`` over ``PROMOTION_WINDOW_DAYS``, computed at most once a minute per deployment."""
    now = time.monotonic()
    key = (str(session.get_bind().engine.url), newest_deployment)
    with _effects_lock:
        hit = _effects_cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    effects = promotion_effects(session, days=PROMOTION_WINDOW_DAYS)
    with _effects_lock:
        for stale in [k for k in _effects_cache if k[0] == key[0]]:  # only the newest is asked for again
            del _effects_cache[stale]
        _effects_cache[key] = (now + EFFECTS_TTL_SECONDS, effects)
    return effects


def promotion_effects(
    session: Session, *, days: int = 7, limit: int = 5, now: datetime | None = None
) -> list[Comparison]:
    """For the newest ``limit`` changes of the production model (rollbacks too), production's turns in the
    ``days`` before against the ``days`` after (each window cut at the neighbouring change), newest first."""
    now = now or utcnow()
    changes: list[tuple[datetime, str | None, str]] = []  # (when, previous version, new version)
    previous: str | None = None
    for version, created in session.execute(
        select(Deployment.production_version, Deployment.created_at).order_by(Deployment.id)
    ):
        if version != previous:
            changes.append((as_utc(created), previous, version))
        previous = version
    span = timedelta(days=days)
    effects = []
    for index in range(len(changes) - 1, 0, -1):  # the first row is the first deployment: nothing before it
        at, before_version, after_version = changes[index]
        start = max(at - span, changes[index - 1][0])
        end = min(at + span, changes[index + 1][0] if index + 1 < len(changes) else now, now)
        effects.append(
            Comparison(
                kind="promotion",
                baseline=outcomes(
                    session, served_by=PRODUCTION, version=before_version, since=start, until=at
                ),
                candidate=outcomes(session, served_by=PRODUCTION, version=after_version, since=at, until=end),
                at=at,
            )
        )
        if len(effects) >= limit:
            break
    return effects


def guard_findings(comparison: Comparison, *, min_questions: int) -> list[Difference]:
    """The outcomes on which the canary is worse by the always-valid test, once each arm has answered
    ``min_questions`` questions (0: the guard is off, nothing is found)."""
    if min_questions <= 0:
        return []
    if min(comparison.baseline.questions, comparison.candidate.questions) < min_questions:
        return []
    return [d for d in comparison.differences if d.outcome in GUARD_OUTCOMES and d.worse_always_valid()]


def canary_guard(session: Session, *, min_questions: int, now: datetime | None = None) -> Deployment | None:
    """End the canary when live traffic says it is worse than production (``guard_findings``): the canary
    goes, production and shadow stay, recorded as a deployment row by ``canary-guard`` with the figures as
    its reason. Returns the new row, or None when nothing changed."""
    if min_questions <= 0:
        return None
    row = current_deployment(session)
    if row is None or row.canary_version is None:
        return None
    # Every worker looks each minute: lock the row in force (PostgreSQL; SQLite serialises writers) and act
    # only while it is still the newest, so two workers looking at once end the canary once.
    session.scalars(select(Deployment.id).where(Deployment.id == row.id).with_for_update()).one()
    if session.scalar(select(func.max(Deployment.id))) != row.id:
        return None
    comparison = canary_comparison(session, now=now)
    if comparison is None:
        return None
    worse = guard_findings(comparison, min_questions=min_questions)
    if not worse:
        return None
    details = [
        f"{d.outcome} {d.candidate_share:.1%} against {d.baseline_share:.1%} "
        f"(z {-(d.z or 0.0):.1f} past the always-valid {always_valid_z(d.effective_n):.1f})"
        for d in worse
    ]
    baseline, candidate = comparison.baseline, comparison.candidate
    reason = (
        f"canary {row.canary_version} worse than production on live traffic: {'; '.join(details)} "
        f"over {candidate.questions} canary and {baseline.questions} production questions"
    )
    return set_deployment(
        session,
        production_version=row.production_version,
        canary_version=None,
        canary_share=0.0,
        shadow_version=row.shadow_version,
        actor=GUARD_ACTOR,
        reason=reason,
    )
