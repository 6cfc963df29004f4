"""Live outcomes per arm and window, the canary against production, and before/after each model change, on
both databases; the difference interval against Newcombe's published values."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from core.models import Deployment, ReviewItem, ReviewItemTurn, utcnow
from core.registry import get_or_create_conversation, log_turn
from crowd_feedback.outcomes import (
    Difference,
    canary_comparison,
    difference_interval,
    outcomes,
    promotion_effects,
)
from tests.conftest import at_once


def test_difference_interval_matches_newcombe_1998() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10: 56/70 - 48/80 -> 0.0524 to 0.3339.
    low, high = difference_interval(48, 80, 56, 70)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    # 0/10 - 0/20 -> -0.1611 to 0.2775 (here candidate minus baseline, so mirrored).
    low, high = difference_interval(0, 10, 0, 20)
    assert (round(low, 4), round(high, 4)) == (-0.2775, 0.1611)


@pytest.mark.parametrize(
    ("baseline", "candidate", "higher_is_better", "verdict"),
    [
        ((20, 100), (60, 100), True, "better"),
        ((20, 100), (60, 100), False, "worse"),
        ((50, 100), (52, 100), True, "no clear difference"),
        ((0, 0), (3, 10), True, "no data"),
    ],
)
def test_verdict_only_when_the_interval_excludes_zero(
    baseline: tuple[int, int], candidate: tuple[int, int], higher_is_better: bool, verdict: str
) -> None:
    assert Difference("x", higher_is_better, baseline, candidate).verdict == verdict


def turns(
    session: Session,
    n: int,
    *,
    status: str,
    version: str,
    at: datetime,
    arm: str = "production",
    helpful: bool | None = None,
    picked: bool = False,
    audit: str | None = None,
) -> None:
    """n turns at ``at``; ``audit``: each answered turn goes to a resolved audit item with this label."""
    conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
    for _ in range(n):
        turn = log_turn(
            session,
            conversation_id=conversation.id,
            user_text="q",
            status=status,
            intent="card_arrival" if status == "answered" else None,
            answer="",
            confidence=0.5,
            candidates=[],
            member_scores={},
            model_version=version,
            latency_ms=1.0,
            served_by=arm,
        )
        turn.created_at = at
        turn.helpful = helpful
        turn.chosen_intent = "card_arrival" if picked else None
        if audit is not None:
            item = ReviewItem(text="q", status="resolved", resolved_label=audit, cluster_size=1)
            session.add(item)
            session.flush()
            session.add(ReviewItemTurn(item_id=item.id, turn_id=turn.id, reason="audit"))
    session.flush()


def deploy(session: Session, at: datetime, production: str, canary: str | None = None) -> None:
    session.add(
        Deployment(
            production_version=production,
            canary_version=canary,
            canary_share=0.5 if canary else 0.0,
            created_at=at,
            actor="omar",
            reason="test",
        )
    )
    session.flush()


def test_outcomes_count_one_arm_one_model_one_window(db_session: Session) -> None:
    now = utcnow()
    at = now - timedelta(hours=1)
    turns(db_session, 6, status="answered", version="A", at=at, helpful=True)
    turns(db_session, 2, status="answered", version="A", at=at, helpful=False, audit="change_pin")
    turns(db_session, 2, status="answered", version="A", at=at, audit="card_arrival")
    turns(db_session, 3, status="clarify", version="A", at=at, picked=True)
    turns(db_session, 1, status="clarify", version="A", at=at)
    turns(db_session, 2, status="handoff", version="A", at=at)
    turns(db_session, 2, status="off_topic", version="A", at=at)  # declined: not answered, as a handoff
    turns(db_session, 3, status="small_talk", version="A", at=at)  # no questions
    turns(
        db_session, 5, status="answered", version="A", at=at, arm="suggestion"
    )  # clicked chips: no questions
    turns(db_session, 7, status="answered", version="B", at=at)  # another model
    turns(db_session, 9, status="answered", version="A", at=now - timedelta(days=3))  # before the window
    got = outcomes(db_session, served_by="production", version="A", since=now - timedelta(days=1), until=now)
    assert (got.questions, got.answered, got.clarify, got.picked, got.handoff) == (18, 10, 4, 3, 4)
    assert (got.rated, got.unhelpful, got.audited, got.audited_correct) == (8, 2, 4, 2)


def test_the_canary_against_production_since_it_started(db_session: Session) -> None:
    now = utcnow()
    deploy(db_session, now - timedelta(days=10), "A")
    deploy(db_session, now - timedelta(days=2), "A", canary="B")
    deploy(db_session, now - timedelta(days=1), "A", canary="B")  # e.g. a shadow added: the canary goes on
    # Before the canary started, production's turns do not count.
    turns(db_session, 50, status="handoff", version="A", at=now - timedelta(days=5))
    at = now - timedelta(hours=30)
    turns(db_session, 40, status="answered", version="A", at=at, helpful=True)
    turns(db_session, 60, status="handoff", version="A", at=at)
    turns(db_session, 70, status="answered", version="B", at=at, arm="canary", helpful=True)
    turns(db_session, 30, status="handoff", version="B", at=at, arm="canary")
    comparison = canary_comparison(db_session, now=now)
    assert comparison is not None and comparison.kind == "canary"
    assert comparison.at == now - timedelta(days=2)
    assert (comparison.baseline.version, comparison.baseline.questions) == ("A", 100)
    assert (comparison.candidate.version, comparison.candidate.questions) == ("B", 100)
    by_name = {d.outcome: d for d in comparison.differences}
    answered = by_name["answered"]
    assert answered.difference == pytest.approx(0.30) and answered.verdict == "better"
    low, high = answered.interval
    assert 0.15 < low < 0.30 < high < 0.45
    assert by_name["handoffs"].verdict == "better"  # fewer handoffs
    assert by_name["thumbs-down"].verdict == "no clear difference"  # nobody said thumbs-down
    assert by_name["audited precision"].verdict == "no data"
    assert comparison.better == ["answered", "answered or picked", "handoffs"] and comparison.worse == []
    body = comparison.to_dict()
    assert body["baseline"]["questions"] == 100 and body["differences"][0]["verdict"] == "better"
    # Promoted: no canary any more.
    deploy(db_session, now, "B")
    assert canary_comparison(db_session, now=now + timedelta(minutes=1)) is None


def test_before_and_after_each_model_change_newest_first(db_session: Session) -> None:
    now = utcnow()
    t0, t1, t2 = now - timedelta(days=20), now - timedelta(days=9), now - timedelta(days=4)
    deploy(db_session, t0, "A")
    deploy(db_session, t1 - timedelta(days=1), "A", canary="B")  # not a change of production
    deploy(db_session, t1, "B")  # promoted
    deploy(db_session, t2, "A")  # rolled back 5 days later
    turns(
        db_session, 10, status="answered", version="A", at=t1 - timedelta(days=8)
    )  # more than 7 days before
    turns(db_session, 30, status="answered", version="A", at=t1 - timedelta(days=3))
    turns(db_session, 70, status="handoff", version="A", at=t1 - timedelta(days=3))
    turns(
        db_session, 5, status="answered", version="B", at=t1 - timedelta(days=1), arm="canary"
    )  # canary arm
    turns(db_session, 60, status="answered", version="B", at=t1 + timedelta(days=1))
    turns(db_session, 40, status="handoff", version="B", at=t1 + timedelta(days=1))
    turns(db_session, 10, status="answered", version="A", at=t2 + timedelta(days=1))
    turns(db_session, 30, status="handoff", version="A", at=t2 + timedelta(days=1))
    effects = promotion_effects(db_session, days=7, now=now)
    assert [(e.baseline.version, e.candidate.version) for e in effects] == [("B", "A"), ("A", "B")]
    rollback, promotion = effects
    assert promotion.at == t1 and promotion.baseline.since == t1 - timedelta(days=7)
    assert promotion.candidate.until == t2  # cut at the rollback, 5 days later
    assert (promotion.baseline.questions, promotion.baseline.answered) == (100, 30)
    assert (promotion.candidate.questions, promotion.candidate.answered) == (100, 60)
    assert promotion.differences[0].verdict == "better"
    # The rollback: before it, B's turns since the promotion (5 days: the window is cut there); after it, A's.
    assert rollback.baseline.since == t1 and rollback.candidate.until == now
    assert (rollback.baseline.questions, rollback.candidate.questions) == (100, 40)
    assert rollback.candidate.answered == 10 and rollback.differences[0].verdict == "worse"
    assert len(promotion_effects(db_session, days=7, limit=1, now=now)) == 1


def register(session: Session, *versions: str) -> None:
    from core.registry import register_model_version

    for version in versions:
        register_model_version(
            session,
            version=version,
            bundle_path=f"/bundles/{version}",
            metrics={},
            data_hash="x",
            kb_version_id=None,
        )


def test_the_canary_guard_takes_a_worse_canary_out_and_nothing_else(db_session: Session) -> None:
    from core.registry import current_deployment
    from crowd_feedback.outcomes import GUARD_ACTOR, canary_guard

    register(db_session, "A", "B", "S")
    now = utcnow()
    deploy(db_session, now - timedelta(days=3), "A")
    db_session.add(
        Deployment(
            production_version="A",
            canary_version="B",
            canary_share=0.2,
            shadow_version="S",
            created_at=now - timedelta(days=1),
            actor="omar",
            reason="try B",
        )
    )
    db_session.flush()
    at = now - timedelta(hours=2)
    turns(db_session, 600, status="answered", version="A", at=at)
    turns(db_session, 200, status="handoff", version="A", at=at)
    turns(db_session, 200, status="answered", version="B", at=at, arm="canary")
    turns(db_session, 200, status="handoff", version="B", at=at, arm="canary")
    # 400 canary questions: under the guard's minimum of 500, it waits whatever it sees.
    assert canary_guard(db_session, min_questions=500, now=now) is None
    assert canary_guard(db_session, min_questions=0, now=now) is None  # off
    row = canary_guard(db_session, min_questions=400, now=now)
    assert row is not None and current_deployment(db_session).id == row.id
    assert (row.production_version, row.canary_version, row.canary_share, row.shadow_version) == (
        "A",
        None,
        0.0,
        "S",
    )
    assert row.actor == GUARD_ACTOR
    assert row.reason.startswith(
        "canary B worse than production on live traffic: answered or picked 50.0% against 75.0% (z 8.7 past "
        "the always-valid 3.8); handoffs 50.0% against 25.0% (z 8.7 past"
    )
    assert row.reason.endswith("over 400 canary and 800 production questions")
    assert canary_guard(db_session, min_questions=400, now=now) is None  # no canary any more


def test_the_canary_guard_leaves_a_canary_that_is_not_clearly_worse(db_session: Session) -> None:
    from crowd_feedback.outcomes import canary_guard

    register(db_session, "A", "B")
    now = utcnow()
    deploy(db_session, now - timedelta(days=1), "A", canary="B")
    at = now - timedelta(hours=2)
    # 70 % against 75 % answered: worse at a glance, inside the 99 % interval.
    turns(db_session, 150, status="answered", version="A", at=at)
    turns(db_session, 50, status="handoff", version="A", at=at)
    turns(db_session, 140, status="answered", version="B", at=at, arm="canary")
    turns(db_session, 60, status="handoff", version="B", at=at, arm="canary")
    assert canary_guard(db_session, min_questions=100, now=now) is None


def test_the_always_valid_boundary_is_stricter_than_a_fixed_interval_and_flattens() -> None:
    from crowd_feedback.outcomes import always_valid_z

    values = [always_valid_z(n) for n in (100, 180, 500, 1000, 5000)]
    assert [round(v, 2) for v in values] == [4.45, 3.99, 3.63, 3.57, 3.66]
    assert min(values) > 2.576  # never looser than one look's 99 % interval
    # 5 points fewer answered among 1,000 canary and 9,000 production questions: a 99 % interval would act;
    # the always-valid test, which may look every minute, does not yet.
    difference = Difference("answered or picked", True, (6300, 9000), (650, 1000))
    assert difference.z is not None and -3.5 < difference.z < -2.6 and not difference.worse_always_valid()
    assert difference.verdict_at(2.576) == "worse"


@pytest.mark.postgres
def test_workers_looking_at_once_end_the_canary_once(postgres_schema_url: str) -> None:
    """Four workers run the guard in the same instant on PostgreSQL: one deployment row ends the canary."""
    from sqlalchemy import func, select

    from core.db import make_engine
    from core.models import Conversation, ModelVersion, OpsEvent, Turn
    from crowd_feedback.outcomes import GUARD_ACTOR, canary_guard

    engine = make_engine(postgres_schema_url)
    with Session(engine) as session:
        register(session, "GA", "GB")
        now = utcnow()
        deploy(session, now - timedelta(days=1), "GA", canary="GB")
        at = now - timedelta(hours=1)
        turns(session, 600, status="answered", version="GA", at=at)
        turns(session, 200, status="handoff", version="GA", at=at)
        turns(session, 200, status="answered", version="GB", at=at, arm="canary")
        turns(session, 200, status="handoff", version="GB", at=at, arm="canary")
        session.commit()
    acted: list[bool] = []
    at_once(engine, 4, lambda session: acted.append(canary_guard(session, min_questions=300) is not None))
    with Session(engine) as session:
        ended = session.scalar(
            select(func.count()).select_from(Deployment).where(Deployment.actor == GUARD_ACTOR)
        )
        guard_events = session.scalar(
            select(func.count())
            .select_from(OpsEvent)
            .where(OpsEvent.kind == "deployment.changed", OpsEvent.text.like(f"%by {GUARD_ACTOR}:%"))
        )
        # The schema is shared by the whole session's PostgreSQL tests: leave no committed rows behind.
        session.execute(Deployment.__table__.delete())
        session.execute(OpsEvent.__table__.delete())
        session.execute(Turn.__table__.delete())
        session.execute(Conversation.__table__.delete())
        session.execute(ModelVersion.__table__.delete().where(ModelVersion.version.in_(["GA", "GB"])))
        session.commit()
    engine.dispose()
    assert sorted(acted) == [False, False, False, True] and ended == 1
    # ... and one ops event says so, with the guard's figures as the reason.
    assert guard_events == 1
