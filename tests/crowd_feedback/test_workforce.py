"""Review time and the workforce figures, on both databases: time is measured from the claim to the answer,
kept across a reload, reset by a skip; per-reviewer and total figures over a window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Claim, Judgement, ReviewItem, User, as_utc, utcnow
from crowd_feedback.review import (
    ReviewPolicy,
    add_gold_item,
    next_item,
    release_claim,
    reviewer_stats,
    route_turn,
    submit_judgement,
)
from crowd_feedback.reviewers import create_user, suspend
from crowd_feedback.workforce import FAST_SECONDS, workforce
from tests.conftest import answer_next
from tests.crowd_feedback.test_review import INTENTS, make_turn, reviewers

POLICY = ReviewPolicy(gold_rate=0.0, qualification_items=0)  # no practice: the order is the test's


def new_item(session: Session, text: str) -> ReviewItem:
    item = route_turn(
        session, turn=make_turn(session, text), reasons=["handoff"], embedding=None, policy=POLICY
    )
    assert item is not None
    return item


def answer(
    session: Session, reviewer: Any, item: ReviewItem, label: str, *, taken: datetime, seconds: float
) -> Judgement:
    answer_next(
        session,
        reviewer,
        label,
        policy=POLICY,
        known_intents=INTENTS,
        taken=taken,
        seconds=seconds,
        expect=item,
    )
    return session.scalars(
        select(Judgement).where(Judgement.item_id == item.id, Judgement.reviewer_id == reviewer.id)
    ).one()


def test_time_runs_from_the_claim_survives_a_reload_and_restarts_after_a_skip(db_session: Session) -> None:
    ann, bob, cid = reviewers(db_session, 3)
    item = new_item(db_session, "where is my card")
    start = utcnow()
    assert next_item(db_session, reviewer=ann, policy=POLICY, now=start) is item
    claim = db_session.scalars(select(Claim).where(Claim.reviewer_id == ann.id)).one()
    assert as_utc(claim.claimed_at) == start
    # A reload 20 s later hands back the same claim: the clock keeps running from the first view.
    assert next_item(db_session, reviewer=ann, policy=POLICY, now=start + timedelta(seconds=20)) is item
    submit_judgement(
        db_session,
        item_id=item.id,
        reviewer=ann,
        label="card_arrival",
        answer_ok=True,
        known_intents=INTENTS,
        policy=POLICY,
        now=start + timedelta(seconds=45.5),
    )
    assert db_session.scalars(select(Judgement.seconds).where(Judgement.reviewer_id == ann.id)).one() == 45.5
    # A skip gives the item back; taking it again starts a new clock.
    assert next_item(db_session, reviewer=bob, policy=POLICY, now=start) is item
    release_claim(db_session, item_id=item.id, reviewer=bob)
    judgement = answer(db_session, bob, item, "card_arrival", taken=start + timedelta(minutes=3), seconds=12)
    assert judgement.seconds == 12.0
    # A claim taken before claims recorded their time (migration 0017) gives no time, not a made-up one.
    assert next_item(db_session, reviewer=cid, policy=POLICY, now=start) is None  # two agreed: resolved
    other = new_item(db_session, "what is the exchange rate")
    assert next_item(db_session, reviewer=cid, policy=POLICY, now=start) is other
    legacy = db_session.scalars(select(Claim).where(Claim.reviewer_id == cid.id)).one()
    legacy.claimed_at = None
    db_session.flush()
    submit_judgement(
        db_session,
        item_id=other.id,
        reviewer=cid,
        label="exchange_rate",
        answer_ok=None,
        known_intents=INTENTS,
        policy=POLICY,
        now=start + timedelta(seconds=30),
    )
    assert db_session.scalars(select(Judgement.seconds).where(Judgement.reviewer_id == cid.id)).one() is None
    assert reviewer_stats(db_session, reviewer=ann)["median_seconds"] == 45.5
    assert reviewer_stats(db_session, reviewer=cid)["median_seconds"] is None


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        (12.5, 12.5),  # the page was in use 12.5 s of the 300 the claim is old: a tab left open is not work
        (900.0, 300.0),  # a page cannot claim more than the claim's age
        (None, 300.0),  # no JavaScript: the claim's age
        (float("nan"), 300.0),
        (-4.0, 300.0),
    ],
)
def test_the_page_active_time_counts_when_smaller_than_the_claim_age(
    db_session: Session, active: float | None, expected: float
) -> None:
    (ann,) = reviewers(db_session, 1)
    item = new_item(db_session, "where is my card")
    answer_next(
        db_session,
        ann,
        "card_arrival",
        policy=POLICY,
        known_intents=INTENTS,
        taken=utcnow(),
        seconds=300,
        expect=item,
        active_seconds=active,
    )
    assert db_session.scalars(select(Judgement.seconds)).one() == expected


def test_workforce_per_reviewer_and_the_cost_of_a_resolved_item(db_session: Session) -> None:
    ann, bob, cid, dan = reviewers(db_session, 4)
    olga = create_user(db_session, username="olga", password="correct horse battery", role="operator")
    create_user(
        db_session, username="omar", password="correct horse battery", role="operator"
    )  # never judged
    now = utcnow()
    taken = now - timedelta(hours=1)
    # Three items, each resolved by two agreeing reviewers; bob disagrees on the third, answering in 2 s.
    first, second, third = (new_item(db_session, text) for text in ("card?", "pin?", "rate?"))
    answer(db_session, ann, first, "card_arrival", taken=taken, seconds=30)
    answer(db_session, bob, first, "card_arrival", taken=taken, seconds=2)
    answer(db_session, ann, second, "change_pin", taken=taken, seconds=50)
    answer(db_session, olga, second, "change_pin", taken=taken, seconds=20)
    answer(db_session, ann, third, "exchange_rate", taken=taken, seconds=40)
    answer(db_session, bob, third, "card_arrival", taken=taken, seconds=1)
    answer(db_session, cid, third, "exchange_rate", taken=taken, seconds=60)
    for item in (first, second, third):
        db_session.refresh(item)
        assert item.status == "resolved"
    # A gold check counts as work but is no resolved item; dan's old judgement is outside the window.
    gold = add_gold_item(db_session, text="my card has not come", label="card_arrival", policy=POLICY)
    gold_policy = ReviewPolicy(gold_rate=1.0, qualification_items=0)
    answer_next(
        db_session,
        cid,
        "card_arrival",
        policy=gold_policy,
        known_intents=INTENTS,
        taken=taken,
        seconds=10,
        expect=gold,
    )
    old = new_item(db_session, "very old question")
    answer(db_session, dan, old, "card_arrival", taken=now - timedelta(days=40), seconds=300)
    suspend(db_session, user=dan, reason="accuracy on gold 1/8 below 70%")
    db_session.flush()

    work = workforce(db_session, since=now - timedelta(days=30))
    people = {p.username: p for p in work.people}
    assert set(people) == {
        "rev0",
        "rev1",
        "rev2",
        "rev3",
        "olga",
    }  # omar judged nothing, reviewers always show
    assert [p.username for p in work.people] == ["rev0", "rev1", "rev2", "olga", "rev3"]  # busiest first
    a, b, c, d, o = (people[n] for n in ("rev0", "rev1", "rev2", "rev3", "olga"))
    assert (a.judgements, a.resolved, a.agreed, a.median_seconds) == (3, 3, 3, 40.0)
    assert a.agreement == 1.0 and a.per_hour == pytest.approx(3 / 120 * 3600)
    assert (b.judgements, b.agreed, b.resolved, b.median_seconds) == (2, 1, 2, 1.5)
    assert b.agreement == 0.5 and b.fast and not a.fast and FAST_SECONDS > 1.5
    assert b.per_hour is None  # 3 s of work: too little for an hourly rate
    assert (c.judgements, c.resolved, c.agreed, c.gold_answered, c.gold_correct) == (2, 1, 1, 1, 1)
    assert c.median_seconds == 35.0 and c.gold_accuracy == 1.0
    assert (d.judgements, d.median_seconds, d.last_judged_at, d.status) == (0, None, None, "suspended")
    assert d.suspended_reason == "accuracy on gold 1/8 below 70%"
    assert (o.role, o.judgements, o.median_seconds) == ("operator", 1, 20.0)
    effort = work.effort
    assert (effort.judgements, effort.timed, effort.resolved_items) == (8, 8, 3)
    assert effort.work_seconds == 30 + 2 + 50 + 20 + 40 + 1 + 60 + 10
    assert effort.hours == pytest.approx(213 / 3600)
    assert effort.median_seconds == 25.0
    # Mean judgement (213 / 8 s) times judgements per resolved item (8 / 3): 71 s per verified label.
    assert effort.seconds_per_resolved == pytest.approx(71.0)
    # The whole history: dan's old judgement counts, and its item is not resolved (one judgement).
    everything = workforce(db_session, since=now - timedelta(days=60))
    assert {p.username: p.judgements for p in everything.people}["rev3"] == 1
    assert everything.effort.judgements == 9


def test_an_empty_window_has_no_figures(db_session: Session) -> None:
    (ann,) = reviewers(db_session, 1)
    work = workforce(db_session, since=utcnow() - timedelta(days=30))
    assert [(p.username, p.judgements, p.agreement, p.per_hour, p.fast) for p in work.people] == [
        ("rev0", 0, None, None, False)
    ]
    assert (work.effort.judgements, work.effort.median_seconds, work.effort.seconds_per_resolved) == (
        0,
        None,
        None,
    )
    assert db_session.get(User, ann.id) is not None


def test_a_reviewers_own_record_and_mixups_never_show_check_questions(db_session: Session) -> None:
    from crowd_feedback.quality import LabelMixup, label_mixups
    from crowd_feedback.workforce import answer_record

    me, other = reviewers(db_session, 2)
    start = utcnow() - timedelta(hours=1)

    def judged(text: str, mine: str, theirs: str, **fields: Any) -> ReviewItem:
        item = ReviewItem(text=text, reasons=["clarify"], **fields)
        db_session.add(item)
        db_session.flush()
        minute = len(db_session.scalars(select(Judgement)).all())
        for person, label in ((me, mine), (other, theirs)):
            db_session.add(
                Judgement(
                    item_id=item.id,
                    reviewer_id=person.id,
                    label=label,
                    new_intent_text="metal card" if label == "new_intent" else None,
                    created_at=start + timedelta(minutes=minute),
                )
            )
        db_session.flush()
        return item

    settled = {"status": "resolved", "resolved_label": "card_arrival"}
    first = judged("where is my card", "card_arrival", "card_arrival", **settled)
    second = judged("card still not here", "card_delivery_estimate", "card_arrival", **settled)
    third = judged("has my card shipped", "card_delivery_estimate", "card_arrival", **settled)
    waiting = judged("pin?", "change_pin", "change_pin", status="pending")
    escalated = judged("odd", "new_intent", "exchange_rate", status="escalated")
    judged("key?", "exchange_rate", "change_pin", is_gold=True, gold_label="change_pin")  # never listed

    records, total = answer_record(db_session, reviewer_id=me.id)
    assert total == 5
    assert [r.item_id for r in records] == [escalated.id, waiting.id, third.id, second.id, first.id]
    assert [(r.status, r.settled, r.agreed) for r in records] == [
        ("escalated", None, None),
        ("pending", None, None),
        ("resolved", "card_arrival", False),
        ("resolved", "card_arrival", False),
        ("resolved", "card_arrival", True),
    ]
    assert records[0].new_intent_text == "metal card" and records[0].label == "new_intent"
    assert records[2].answered_at > records[3].answered_at and records[2].answered_at.tzinfo is not None
    page, _ = answer_record(db_session, reviewer_id=me.id, limit=2, offset=2)
    assert [r.item_id for r in page] == [third.id, second.id]
    assert answer_record(db_session, reviewer_id=other.id)[1] == 5
    # Their own mix-ups: resolved items only, so the check question's key (change_pin) is not told.
    assert label_mixups(db_session, reviewer_id=me.id, min_times=1) == [
        LabelMixup("card_arrival", "card_delivery_estimate", 2, 3)
    ]
    assert label_mixups(db_session, reviewer_id=other.id, min_times=1) == []
    # Everyone's mix-ups (operators) do count the check question's key.
    assert LabelMixup("change_pin", "exchange_rate", 1, 2) in label_mixups(db_session, min_times=1)
