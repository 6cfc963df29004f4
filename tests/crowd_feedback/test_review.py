"""The review loop on both databases: routing, clustering, leases, redundancy, gold, resolution."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.events import recent_events
from core.models import (
    Claim,
    Conversation,
    Judgement,
    ReviewItem,
    ReviewItemTurn,
    Turn,
    User,
    VerifiedPair,
    utcnow,
)
from core.registry import SUGGESTION_ARM, get_or_create_conversation, log_turn
from crowd_feedback.review import (
    NEW_INTENT,
    ReviewError,
    ReviewPolicy,
    add_gold_item,
    attach_similar_turn,
    changeable_judgement,
    in_practice,
    judgement_answers,
    member_kept,
    member_questions,
    needs_conversation,
    next_item,
    practice_available,
    practice_feedback,
    redact_reported_item,
    release_claim,
    report_personal_data,
    review_reasons,
    reviewer_stats,
    route_turn,
    set_item_vectors,
    similar_pending_item,
    submit_judgement,
    unvectored_items,
    weekly_agreement,
    withdraw_judgement,
)
from crowd_feedback.reviewers import AccountError, authenticate, create_user, suspend

INTENTS = ["card_arrival", "change_pin", "exchange_rate"]
POLICY = ReviewPolicy(gold_rate=0.0)


def make_turn(
    session: Session,
    text: str,
    *,
    status: str = "handoff",
    confidence: float = 0.3,
    top: str = "card_arrival",
    conversation_id: str | None = None,
    served_by: str = "production",
) -> Turn:
    """A turn of a new conversation, or of ``conversation_id``'s."""
    if conversation_id is None:
        conversation_id = get_or_create_conversation(session, conversation_id=None, channel="widget").id
    return log_turn(
        session,
        conversation_id=conversation_id,
        user_text=text,
        status=status,
        intent=top if status == "answered" else None,
        answer="",
        confidence=confidence,
        candidates=[{"intent": top, "probability": confidence, "title": top}],
        member_scores={},
        model_version="v1",
        latency_ms=1.0,
        served_by=served_by,
    )


def vector(seed: int, base: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=16) if base is None else base + noise * rng.normal(size=16)
    return v / np.linalg.norm(v)


def reviewers(session: Session, n: int, prefix: str = "rev") -> list[Any]:
    return [
        create_user(session, username=f"{prefix}{i}", password="correct horse battery", role="reviewer")
        for i in range(n)
    ]


def judge(
    session: Session,
    item: ReviewItem,
    reviewer: Any,
    label: str,
    policy: ReviewPolicy,
    member_checks: dict[str, bool] | None = None,
    new_intent_text: str | None = None,
) -> None:
    """Take the next item (it must be ``item``) and answer it with ``label``."""
    assert next_item(session, reviewer=reviewer, policy=policy) is item
    submit_judgement(
        session,
        item_id=item.id,
        reviewer=reviewer,
        label=label,
        answer_ok=None,
        new_intent_text=new_intent_text,
        member_checks=member_checks,
        known_intents=INTENTS,
        policy=policy,
    )


def answer_practice(session: Session, reviewer: Any, label: str, policy: ReviewPolicy) -> ReviewItem:
    """Take the next item, which must be a check question (practice), and answer it with ``label``."""
    item = next_item(session, reviewer=reviewer, policy=policy, rng=random.Random(0))
    assert item is not None and item.is_gold
    return submit_judgement(
        session,
        item_id=item.id,
        reviewer=reviewer,
        label=label,
        answer_ok=None,
        known_intents=INTENTS,
        policy=policy,
    )


def test_reasons() -> None:
    assert review_reasons(status="handoff", members_disagree=False, audit_draw=0.5, policy=POLICY) == [
        "handoff"
    ]
    assert review_reasons(status="answered", members_disagree=True, audit_draw=0.5, policy=POLICY) == [
        "disagreement"
    ]
    assert review_reasons(status="answered", members_disagree=False, audit_draw=0.01, policy=POLICY) == [
        "audit"
    ]
    assert review_reasons(status="answered", members_disagree=False, audit_draw=0.5, policy=POLICY) == []
    # Declined as off topic: its own reason, which the items page filters by (to settle spam in bulk).
    assert review_reasons(status="off_topic", members_disagree=False, audit_draw=0.0, policy=POLICY) == [
        "off_topic"
    ]


def test_similar_questions_cluster_into_one_item_with_redacted_text(db_session: Session) -> None:
    base = vector(1)
    first = route_turn(
        db_session,
        turn=make_turn(db_session, "where is my card? mail me at a@b.com"),
        reasons=["handoff"],
        embedding=base,
        policy=POLICY,
    )
    second = route_turn(
        db_session,
        turn=make_turn(db_session, "my card has not come"),
        reasons=["thumbs_down"],
        embedding=vector(2, base, 0.05),
        policy=POLICY,
    )
    other = route_turn(
        db_session,
        turn=make_turn(db_session, "something else entirely"),
        reasons=["handoff"],
        embedding=vector(3),
        policy=POLICY,
    )
    assert first is not None and second is not None and other is not None
    assert second.id == first.id and other.id != first.id
    assert first.cluster_size == 2 and len(first.turns) == 2
    assert first.text == "where is my card? mail me at [EMAIL]"
    assert set(first.reasons) == {"handoff", "thumbs_down"}
    assert (
        route_turn(db_session, turn=make_turn(db_session, "fine"), reasons=[], embedding=base, policy=POLICY)
        is None
    )


def test_an_item_keeps_the_turns_before_its_question_redacted(db_session: Session) -> None:
    conversation = get_or_create_conversation(db_session, conversation_id=None, channel="widget")

    def say(
        text: str,
        status: str,
        intent: str = "card_arrival",
        conversation_id: str | None = None,
        served_by: str = "production",
    ) -> Turn:
        return make_turn(
            db_session,
            text,
            status=status,
            top=intent,
            conversation_id=conversation_id or conversation.id,
            served_by=served_by,
        )

    stale = say("hello from yesterday", "small_talk")
    stale.created_at = utcnow() - timedelta(hours=2)  # outside the window
    ordered = say("I ordered a new card, mail me at jo@example.com", "answered", "card_arrival")
    ordered.helpful = False
    say("somebody else's question", "handoff", conversation_id=make_turn(db_session, "x").conversation_id)
    asked = say("which one?", "clarify")
    asked.chosen_intent = "change_pin"
    say("/change_pin", "answered", "change_pin", served_by=SUGGESTION_ARM)  # the chip it clicked
    question = say("and how long will that take?", "handoff")
    say("a later question", "handoff")  # after the question: not context
    db_session.flush()
    policy = dataclasses.replace(POLICY, context_turns=5)
    item = route_turn(db_session, turn=question, reasons=["handoff"], embedding=vector(40), policy=policy)
    assert item is not None and item.context == [
        {
            "text": "I ordered a new card, mail me at [EMAIL]",
            "status": "answered",
            "intent": "card_arrival",
            "chosen_intent": None,
            "helpful": False,
            "clicked": False,
        },
        {
            "text": "which one?",
            "status": "clarify",
            "intent": None,
            "chosen_intent": "change_pin",
            "helpful": None,
            "clicked": False,
        },
        {
            "text": "/change_pin",
            "status": "answered",
            "intent": "change_pin",
            "chosen_intent": None,
            "helpful": None,
            "clicked": True,
        },
    ]
    # At most context_turns of them, the nearest kept; 0 keeps none; a first question has none.
    fewer = dataclasses.replace(POLICY, context_turns=1)
    one = route_turn(
        db_session,
        turn=say("another one", "handoff"),
        reasons=["handoff"],
        embedding=vector(41),
        policy=fewer,
    )
    assert one is not None and [turn["text"] for turn in one.context] == ["a later question"]
    off = dataclasses.replace(POLICY, context_turns=0)
    none = route_turn(
        db_session, turn=say("more", "handoff"), reasons=["handoff"], embedding=vector(42), policy=off
    )
    assert none is not None and none.context is None
    first = route_turn(
        db_session,
        turn=make_turn(db_session, "first words"),
        reasons=["handoff"],
        embedding=vector(43),
        policy=policy,
    )
    assert first is not None and first.context is None
    # A member joining an item does not change the context reviewers are shown (that of the shown question).
    joined = route_turn(
        db_session,
        turn=make_turn(db_session, "and how long?"),
        reasons=["handoff"],
        embedding=vector(40),
        policy=policy,
    )
    assert joined is item and len(item.context) == 3


def test_the_policy_reads_how_much_of_the_conversation_reviewers_see_from_settings() -> None:
    from core.settings import load_settings

    assert (POLICY.context_turns, POLICY.context_window) == (3, timedelta(minutes=60))
    shown = load_settings(
        {}, environ={"HELPLOOP_REVIEW_CONTEXT_TURNS": "0", "HELPLOOP_REVIEW_CONTEXT_MINUTES": "15"}
    )
    policy = ReviewPolicy.from_settings(shown)
    assert (policy.context_turns, policy.context_window) == (0, timedelta(minutes=15))
    assert POLICY.change_window == timedelta(minutes=10)
    never = load_settings({}, environ={"HELPLOOP_REVIEW_CHANGE_MINUTES": "0"})
    assert ReviewPolicy.from_settings(never).change_window == timedelta(0)


def test_members_must_be_close_to_the_question_reviewers_see(db_session: Session) -> None:
    """The item keeps the vector of its shown (first) question: a chain of questions, each close to the
    previous ones but drifting away from the shown one, does not creep into the item."""
    e = np.eye(16)
    shown = e[0]
    close = (0.9 * e[0] + np.sqrt(1 - 0.81) * e[1]).astype(np.float32)  # cosine 0.90 to the shown one
    drifted = (0.8 * e[0] + 0.6 * e[1]).astype(np.float32)  # 0.80 to the shown one, 0.98 to `close`
    items = [
        route_turn(
            db_session,
            turn=make_turn(db_session, text),
            reasons=["handoff"],
            embedding=embedding,
            policy=POLICY,
        )
        for text, embedding in (("q shown", shown), ("q close", close), ("q drifted", drifted))
    ]
    assert all(item is not None for item in items)
    first, second, third = items
    assert second.id == first.id and third.id != first.id  # a running mean (cosine 0.91) would take it in
    assert first.cluster_size == 2
    assert np.allclose(first.embedding, shown)  # still the shown question's vector


def test_confident_look_alikes_join_pending_items_but_never_open_one(db_session: Session) -> None:
    base = vector(1)
    confident = {"status": "answered", "confidence": 0.97}
    alone = make_turn(db_session, "when does my card come", **confident)
    assert attach_similar_turn(db_session, turn=alone, embedding=base, policy=POLICY) is None
    assert db_session.scalar(select(func.count()).select_from(ReviewItem)) == 0  # nothing opened

    item = route_turn(
        db_session,
        turn=make_turn(db_session, "card not here yet??"),
        reasons=["handoff"],
        embedding=base,
        policy=POLICY,
    )
    assert item is not None
    key_before = item.queue_key
    look_alike = make_turn(db_session, "my card has not arrived", **confident)
    joined = attach_similar_turn(db_session, turn=look_alike, embedding=vector(2, base, 0.05), policy=POLICY)
    assert joined is not None and joined.id == item.id
    assert item.cluster_size == 2 and item.reasons == ["handoff"]  # its reasons are the routed turn's
    assert item.uncertainty == pytest.approx(0.7)  # a confident member does not lower it
    assert item.queue_key > key_before  # asked more often: higher in the queue
    assert {link.turn_id: link.reason for link in item.turns}[look_alike.id] == "similar"
    # Once only, and only to a similar question of the same bot intent.
    assert attach_similar_turn(db_session, turn=look_alike, embedding=base, policy=POLICY) is None
    other_intent = make_turn(db_session, "card not arrived", top="card_linking", **confident)
    assert attach_similar_turn(db_session, turn=other_intent, embedding=base, policy=POLICY) is None
    far = make_turn(db_session, "exchange rate?", **confident)
    assert attach_similar_turn(db_session, turn=far, embedding=vector(9), policy=POLICY) is None
    assert item.cluster_size == 2

    # The reviewers' label reaches the look-alike as a training pair.
    for person in reviewers(db_session, 2):
        judge(db_session, item, person, "card_arrival", POLICY)
    db_session.refresh(item)
    assert item.status == "resolved" and item.resolved_label == "card_arrival"
    pairs = db_session.scalars(select(VerifiedPair).where(VerifiedPair.item_id == item.id)).all()
    assert {pair.text for pair in pairs} == {"card not here yet??", "my card has not arrived"}


def test_queue_order_uncertainty_times_frequency_with_ageing(db_session: Session) -> None:
    now = utcnow()
    old = route_turn(
        db_session,
        turn=make_turn(db_session, "old", confidence=0.9),
        reasons=["clarify"],
        embedding=vector(10),
        policy=POLICY,
        now=now - timedelta(days=10),
    )
    fresh = route_turn(
        db_session,
        turn=make_turn(db_session, "fresh", confidence=0.2),
        reasons=["handoff"],
        embedding=vector(11),
        policy=POLICY,
        now=now,
    )
    (reviewer,) = reviewers(db_session, 1)
    # 0.1 uncertainty but 240 hours old (ageing 0.05/h => +12) beats 0.8 uncertainty just now.
    assert next_item(db_session, reviewer=reviewer, policy=POLICY, now=now).id == old.id
    assert fresh is not None


def test_three_judgements_resolve_into_a_verified_pair(db_session: Session) -> None:
    item = route_turn(
        db_session,
        turn=make_turn(db_session, "my card hasn't arrived, call +44 20 7946 0958"),
        reasons=["handoff"],
        embedding=vector(20),
        policy=POLICY,
    )
    people = reviewers(db_session, 3)
    for reviewer in people[:2]:
        claimed = next_item(db_session, reviewer=reviewer, policy=POLICY)
        assert claimed is not None and claimed.id == item.id
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=reviewer,
            label="card_arrival",
            answer_ok=False,
            known_intents=INTENTS,
            policy=POLICY,
        )
    db_session.refresh(item)
    assert item.status == "resolved" and item.resolved_label == "card_arrival"
    assert item.resolved_confidence >= 0.9  # two agreeing good reviewers suffice: stopped early
    pairs = db_session.scalars(select(VerifiedPair)).all()
    assert [(p.text, p.intent) for p in pairs] == [("my card hasn't arrived, call [PHONE]", "card_arrival")]
    assert next_item(db_session, reviewer=people[2], policy=POLICY) is None


def test_a_question_clear_only_with_the_turns_before_it_makes_no_training_pair(db_session: Session) -> None:
    def follow_up(text: str, seed: int) -> ReviewItem:
        earlier = make_turn(db_session, "I ordered a new card", status="answered", confidence=0.95)
        question = make_turn(db_session, text, conversation_id=earlier.conversation_id)
        item = route_turn(
            db_session, turn=question, reasons=["handoff"], embedding=vector(seed), policy=POLICY
        )
        assert item is not None and item.context is not None
        return item

    def answer(item: ReviewItem, reviewer: Any, needs_context: bool | None) -> None:
        assert next_item(db_session, reviewer=reviewer, policy=POLICY) is item
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=reviewer,
            label="card_arrival",
            answer_ok=None,
            known_intents=INTENTS,
            policy=POLICY,
            needs_context=needs_context,
        )

    people = reviewers(db_session, 2)
    vague = follow_up("and how long does that take?", 60)
    for reviewer in people:
        answer(vague, reviewer, True)
    assert vague.status == "resolved" and vague.resolved_label == "card_arrival"  # the label still counts
    assert needs_conversation(db_session, item=vague)
    assert db_session.scalars(select(VerifiedPair).where(VerifiedPair.item_id == vague.id)).all() == []
    # One reviewer of two is no majority: the pair is written.
    split = follow_up("so where is the card now", 61)
    answer(split, people[0], True)
    answer(split, people[1], False)
    assert split.status == "resolved" and not needs_conversation(db_session, item=split)
    pairs = db_session.scalars(select(VerifiedPair.text).where(VerifiedPair.item_id == split.id)).all()
    assert pairs == ["so where is the card now"]
    # Without earlier turns there was nothing to tick: stored as None.
    plain = route_turn(
        db_session,
        turn=make_turn(db_session, "pin?"),
        reasons=["handoff"],
        embedding=vector(62),
        policy=POLICY,
    )
    assert plain is not None
    answer(plain, people[0], True)
    assert db_session.scalars(select(Judgement.needs_context).where(Judgement.item_id == plain.id)).all() == [
        None
    ]
    # A suspended reviewer's answer does not count: left with the one who ticked it, the split item needs it.
    suspend(db_session, user=people[1], reason="test")
    assert needs_conversation(db_session, item=split)


def test_a_chip_payload_member_becomes_no_verified_pair(db_session: Session) -> None:
    """An item that holds a clicked chip's "/card_arrival" as a member (routed before a chip's thumbs-down
    went to the question behind it) resolves into pairs of its real questions only."""
    item, joined = (
        route_turn(
            db_session, turn=make_turn(db_session, text), reasons=[why], embedding=vector(21), policy=POLICY
        )
        for text, why in (("my card hasn't arrived", "handoff"), ("/card_arrival", "thumbs_down"))
    )
    assert item is not None and joined is item
    for reviewer in reviewers(db_session, 2):
        judge(db_session, item, reviewer, "card_arrival", POLICY)
    db_session.refresh(item)
    assert item.status == "resolved"
    pairs = db_session.scalars(select(VerifiedPair.text).where(VerifiedPair.item_id == item.id)).all()
    assert pairs == ["my card hasn't arrived"]


def test_member_kept_rule() -> None:
    assert member_kept([]) is True  # nobody was shown it: it keeps the label, as before checks existed
    assert member_kept([True]) is True
    assert member_kept([False]) is False
    assert member_kept([True, False]) is False  # a tie drops it
    assert member_kept([True, True, False]) is True
    assert member_kept([True, False, False]) is False


def test_reviewers_confirm_member_questions_and_rejected_ones_get_no_pair(db_session: Session) -> None:
    base = vector(30)
    texts = [
        "my card has not arrived yet",
        "card still not here, mail a@b.com",
        "my card was declined",
        "my card has not arrived yet",  # asked twice: one member question
        "card did not arrive, is it lost?",
    ]
    item = None
    for index, text in enumerate(texts):
        item = route_turn(
            db_session,
            turn=make_turn(db_session, text),
            reasons=["handoff"],
            embedding=vector(31 + index, base, 0.05),
            policy=POLICY,
        )
    assert item is not None and item.cluster_size == 5
    members = member_questions(db_session, item=item, limit=None)
    assert members == [
        "card still not here, mail [EMAIL]",
        "my card was declined",
        "card did not arrive, is it lost?",
    ]
    assert member_questions(db_session, item=item, limit=2) == members[:2]
    declined, lost = members[1], members[2]
    people = reviewers(db_session, 2)
    with pytest.raises(ReviewError, match="not a question of this item"):
        assert next_item(db_session, reviewer=people[0], policy=POLICY) is item
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=people[0],
            label="card_arrival",
            answer_ok=None,
            member_checks={"something else entirely": False},
            known_intents=INTENTS,
            policy=POLICY,
        )
    release_claim(db_session, item_id=item.id, reviewer=people[0])
    # Both reject "declined"; they split on "lost" (a tie drops it); nobody was asked about the first member.
    judge(db_session, item, people[0], "card_arrival", POLICY, {declined: False, lost: True})
    judge(db_session, item, people[1], "card_arrival", POLICY, {declined: False, lost: False})
    stored = db_session.scalars(select(Judgement.member_checks).where(Judgement.item_id == item.id)).all()
    assert {declined: False, lost: True} in stored
    db_session.refresh(item)
    assert item.status == "resolved" and item.resolved_label == "card_arrival"
    pairs = db_session.scalars(select(VerifiedPair.text).where(VerifiedPair.item_id == item.id)).all()
    assert sorted(pairs) == sorted(["my card has not arrived yet", "card still not here, mail [EMAIL]"])
    # The rejected questions were routed for a reason of their own: they go back to review, one item each.
    assert item.cluster_size == 3
    reopened = db_session.scalars(select(ReviewItem).where(ReviewItem.status == "pending")).all()
    assert sorted((r.text, r.reasons, r.cluster_size) for r in reopened) == sorted(
        [(declined, ["handoff"], 1), (lost, ["handoff"], 1)]
    )
    assert member_questions(db_session, item=item, limit=None) == ["card still not here, mail [EMAIL]"]
    # They have no vector yet (nothing here can embed): the router is handed their original questions ...
    missing = unvectored_items(db_session)
    assert sorted(text for _, text in missing) == sorted(
        ["card did not arrive, is it lost?", "my card was declined"]
    )
    assert all(i.embedding is None for i, _ in missing)
    declined_item = next(i for i, text in missing if text == "my card was declined")
    assert similar_pending_item(db_session, make_turn(db_session, "card declined"), base, POLICY) is None
    # ... stores their vectors, and a look-alike of "declined" now joins that item.
    declined_vector = vector(60)
    set_item_vectors(
        [i for i, _ in missing], [declined_vector if i is declined_item else vector(61) for i, _ in missing]
    )
    db_session.flush()
    assert unvectored_items(db_session) == []
    look_alike = make_turn(db_session, "card got declined", status="answered", confidence=0.9)
    assert (
        attach_similar_turn(
            db_session, turn=look_alike, embedding=vector(62, declined_vector, 0.05), policy=POLICY
        )
        is declined_item
    )
    assert declined_item.cluster_size == 2
    with pytest.raises(ValueError, match="2 items but 1 vectors"):
        set_item_vectors([i for i, _ in missing], [vector(63)])


def test_only_pending_non_gold_items_without_a_vector_are_handed_to_the_router(db_session: Session) -> None:
    shown = make_turn(db_session, "where is my card, call +44 20 7946 0958")
    item = route_turn(db_session, turn=shown, reasons=["handoff"], embedding=None, policy=POLICY)
    assert item is not None and item.text == "where is my card, call [PHONE]"
    vectored = route_turn(
        db_session,
        turn=make_turn(db_session, "change my pin"),
        reasons=["handoff"],
        embedding=vector(70),
        policy=POLICY,
    )
    assert vectored is not None and vectored.embedding is not None
    add_gold_item(db_session, text="what is the exchange rate", label="exchange_rate", policy=POLICY)
    resolved = route_turn(
        db_session, turn=make_turn(db_session, "rates?"), reasons=["handoff"], embedding=None, policy=POLICY
    )
    assert resolved is not None
    resolved.status = "resolved"
    db_session.flush()
    # The original text (not the redacted one) is embedded: the input the bot's own vectors had.
    assert [(i.id, text) for i, text in unvectored_items(db_session)] == [
        (item.id, "where is my card, call +44 20 7946 0958")
    ]
    assert unvectored_items(db_session, limit=0) == []


def test_rejected_look_alikes_are_let_go(db_session: Session) -> None:
    base = vector(40)
    item = route_turn(
        db_session,
        turn=make_turn(db_session, "how do I change my pin"),
        reasons=["handoff"],
        embedding=base,
        policy=POLICY,
    )
    assert item is not None
    look_alike = make_turn(db_session, "how do I change my pin code", status="answered", confidence=0.95)
    assert attach_similar_turn(db_session, turn=look_alike, embedding=vector(41, base, 0.05), policy=POLICY)
    people = reviewers(db_session, 2)
    for reviewer in people:
        judge(db_session, item, reviewer, "change_pin", POLICY, {"how do I change my pin code": False})
    db_session.refresh(item)
    assert item.status == "resolved" and item.cluster_size == 1
    assert (
        db_session.scalar(select(func.count()).select_from(ReviewItem)) == 1
    )  # answered confidently: not re-routed
    pairs = db_session.scalars(select(VerifiedPair.text)).all()
    assert pairs == ["how do I change my pin"]


def test_disagreement_asks_for_more_then_escalates(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=0.0, judgements=3, max_judgements=4)
    item = route_turn(
        db_session,
        turn=make_turn(db_session, "ambiguous"),
        reasons=["clarify"],
        embedding=vector(30),
        policy=policy,
    )
    people = reviewers(db_session, 5)
    for reviewer, label in zip(people[:3], ["card_arrival", "change_pin", "exchange_rate"], strict=True):
        judge(db_session, item, reviewer, label, policy)
    db_session.refresh(item)
    assert item.status == "pending" and item.required_judgements == 4
    next_item(db_session, reviewer=people[3], policy=policy)
    submit_judgement(
        db_session,
        item_id=item.id,
        reviewer=people[3],
        label=NEW_INTENT,
        answer_ok=None,
        new_intent_text="metal cards",
        known_intents=INTENTS,
        policy=policy,
    )
    db_session.refresh(item)
    assert item.status == "escalated"
    with pytest.raises(ReviewError, match="its question went to an operator: your answer counted"):
        withdraw_judgement(db_session, item_id=item.id, reviewer=people[3], policy=policy)
    # The operators hear about it (the ops webhook): the item, why, and the redacted question.
    [event] = recent_events(db_session, kind="item.escalated")
    assert event.text.startswith(
        f"Review item {item.id} needs an operator: after 4 judgements no label reached 90% (leading: "
    )
    assert event.text.endswith("Question: “ambiguous”")
    assert event.data["item_id"] == item.id and event.data["judgements"] == 4
    assert event.data["path"] == f"/review/items/{item.id}"


def test_rules_no_double_judging_no_claim_no_unknown_label(db_session: Session) -> None:
    item = route_turn(
        db_session, turn=make_turn(db_session, "q"), reasons=["handoff"], embedding=vector(40), policy=POLICY
    )
    (reviewer, other) = reviewers(db_session, 2)
    with pytest.raises(ReviewError, match="no active claim"):
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=reviewer,
            label="card_arrival",
            answer_ok=True,
            known_intents=INTENTS,
            policy=POLICY,
        )
    assert next_item(db_session, reviewer=reviewer, policy=POLICY).id == item.id
    assert next_item(db_session, reviewer=reviewer, policy=POLICY).id == item.id  # same claim on reload
    with pytest.raises(ReviewError, match="unknown intent"):
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=reviewer,
            label="nope",
            answer_ok=True,
            known_intents=INTENTS,
            policy=POLICY,
        )
    with pytest.raises(ReviewError, match="describe the new intent"):
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=reviewer,
            label=NEW_INTENT,
            answer_ok=True,
            known_intents=INTENTS,
            policy=POLICY,
        )
    submit_judgement(
        db_session,
        item_id=item.id,
        reviewer=reviewer,
        label="change_pin",
        answer_ok=True,
        known_intents=INTENTS,
        policy=POLICY,
    )
    assert next_item(db_session, reviewer=reviewer, policy=POLICY) is None  # never the same item twice
    release_claim(db_session, item_id=item.id, reviewer=other)
    assert next_item(db_session, reviewer=other, policy=POLICY).id == item.id


def test_abandoned_claims_expire(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=0.0, judgements=1)
    item = route_turn(
        db_session, turn=make_turn(db_session, "q"), reasons=["handoff"], embedding=vector(50), policy=policy
    )
    first, second = reviewers(db_session, 2)
    now = utcnow()
    assert next_item(db_session, reviewer=first, policy=policy, now=now).id == item.id
    assert next_item(db_session, reviewer=second, policy=policy, now=now) is None  # the one slot is leased
    later = now + policy.lease + timedelta(seconds=1)
    assert next_item(db_session, reviewer=second, policy=policy, now=later).id == item.id


def held_and_done(session: Session, item: ReviewItem) -> tuple[int, int]:
    """Live claims and judgements on ``item``."""
    claims = session.scalar(select(func.count()).select_from(Claim).where(Claim.item_id == item.id))
    done = session.scalar(select(func.count()).select_from(Judgement).where(Judgement.item_id == item.id))
    return claims or 0, done or 0


def test_a_reviewer_takes_back_their_last_answer_and_answers_it_again(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=0.0, judgements=3)
    first, second = (
        route_turn(
            db_session,
            turn=make_turn(db_session, text),
            reasons=["handoff"],
            embedding=vector(seed),
            policy=policy,
        )
        for text, seed in (("where is it", 51), ("new pin please", 52))
    )
    first.queue_key, second.queue_key = 2.0, 1.0
    rita, sam = reviewers(db_session, 2)
    assert changeable_judgement(db_session, reviewer=rita, policy=policy) is None
    judge(db_session, first, rita, "change_pin", policy)
    assert next_item(db_session, reviewer=rita, policy=policy) is second  # shown next, claimed
    last = changeable_judgement(db_session, reviewer=rita, policy=policy)
    assert last is not None and (last.item_id, last.label) == (first.id, "change_pin")
    with pytest.raises(ReviewError, match="you have not answered this item"):
        withdraw_judgement(db_session, item_id=second.id, reviewer=rita, policy=policy)
    with pytest.raises(ReviewError, match="you have not answered this item"):
        withdraw_judgement(db_session, item_id=first.id, reviewer=sam, policy=policy)

    assert withdraw_judgement(db_session, item_id=first.id, reviewer=rita, policy=policy) is first
    # The answer is gone, the item is Rita's to answer again, and the one she was shown next is free again.
    assert held_and_done(db_session, first) == (1, 0)
    assert held_and_done(db_session, second) == (0, 0)
    assert changeable_judgement(db_session, reviewer=rita, policy=policy) is None
    judge(db_session, first, rita, "card_arrival", policy)  # handed the same item again
    labels = db_session.scalars(select(Judgement.label).where(Judgement.reviewer_id == rita.id)).all()
    assert labels == ["card_arrival"]

    # Only the newest answer, and only for a while.
    judge(db_session, second, rita, "exchange_rate", policy)
    with pytest.raises(ReviewError, match="only your last answer can be changed"):
        withdraw_judgement(db_session, item_id=first.id, reviewer=rita, policy=policy)
    later = utcnow() + policy.change_window + timedelta(seconds=1)
    assert changeable_judgement(db_session, reviewer=rita, policy=policy, now=later) is None
    with pytest.raises(ReviewError, match="can be changed for 10 minutes after it is given"):
        withdraw_judgement(db_session, item_id=second.id, reviewer=rita, policy=policy, now=later)
    never = ReviewPolicy(gold_rate=0.0, change_window=timedelta(0))
    with pytest.raises(ReviewError, match="cannot be changed here"):
        withdraw_judgement(db_session, item_id=second.id, reviewer=rita, policy=never)
    suspend(db_session, user=rita, reason="test")
    with pytest.raises(ReviewError, match="suspended"):
        withdraw_judgement(db_session, item_id=second.id, reviewer=rita, policy=policy)
    assert held_and_done(db_session, second) == (0, 1)


def test_an_answer_that_settled_its_question_stays(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=0.0, judgements=3)
    item = route_turn(
        db_session, turn=make_turn(db_session, "q"), reasons=["handoff"], embedding=vector(53), policy=policy
    )
    people = reviewers(db_session, 3)
    for reviewer in people:
        judge(db_session, item, reviewer, "card_arrival", policy)
        db_session.refresh(item)
        if item.status == "resolved":
            break
    assert item.status == "resolved"
    assert changeable_judgement(db_session, reviewer=reviewer, policy=policy) is None
    with pytest.raises(ReviewError, match="its question is settled already: your answer counted"):
        withdraw_judgement(db_session, item_id=item.id, reviewer=reviewer, policy=policy)
    pairs = db_session.scalars(select(VerifiedPair.intent)).all()
    assert pairs == ["card_arrival"]


def test_a_practice_answer_stays_and_a_hidden_check_answer_leaves_the_gold_record(
    db_session: Session,
) -> None:
    """A practice answer was followed by its expected answer: it stays. A hidden check question allows a
    change like any other item (refusing would reveal it), and its answer leaves the gold counts."""
    policy = ReviewPolicy(gold_rate=1.0, qualification_items=1, gold_min_answered=10)
    for i in range(3):
        add_gold_item(db_session, text=f"where is my card {i}", label="card_arrival", policy=policy)
    (rita,) = reviewers(db_session, 1)
    practice = answer_practice(db_session, rita, "exchange_rate", policy)
    assert changeable_judgement(db_session, reviewer=rita, policy=policy) is None
    with pytest.raises(ReviewError, match="a practice answer stays as given"):
        withdraw_judgement(db_session, item_id=practice.id, reviewer=rita, policy=policy)
    assert not in_practice(rita, policy)
    check = next_item(db_session, reviewer=rita, policy=policy, rng=random.Random(0))
    assert check is not None and check.is_gold and check is not practice
    judge(db_session, check, rita, "change_pin", policy)
    assert (rita.gold_answered, rita.gold_correct) == (2, 0)
    assert changeable_judgement(db_session, reviewer=rita, policy=policy) is not None
    withdraw_judgement(db_session, item_id=check.id, reviewer=rita, policy=policy)
    assert (rita.gold_answered, rita.gold_correct) == (1, 0)
    judge(db_session, check, rita, "card_arrival", policy)  # handed the same check question again
    assert (rita.gold_answered, rita.gold_correct) == (2, 1)


def test_personal_data_a_reviewer_reports_keeps_the_item_from_everyone_until_an_operator_redacts_it(
    db_session: Session,
) -> None:
    policy = ReviewPolicy(gold_rate=0.0, judgements=3)
    earlier = make_turn(db_session, "this is Grace again", status="answered", confidence=0.99)
    turn = make_turn(db_session, "I am Grace and my card is lost", conversation_id=earlier.conversation_id)
    item = route_turn(db_session, turn=turn, reasons=["handoff"], embedding=vector(60), policy=policy)
    assert (
        item.text == "I am Grace and my card is lost"
    )  # a single word that could be a word: kept by the rules
    assert [c["text"] for c in item.context] == ["this is Grace again"]
    db_session.add(VerifiedPair(item_id=item.id, text=item.text, intent="card_arrival", weight=1.0))
    rita, sam = reviewers(db_session, 2)
    operator = create_user(db_session, username="omar", password="correct horse battery", role="operator")
    with pytest.raises(ReviewError, match="no active claim"):
        report_personal_data(db_session, item_id=item.id, reviewer=rita)
    assert next_item(db_session, reviewer=rita, policy=policy) is item
    report_personal_data(db_session, item_id=item.id, reviewer=rita)
    assert item.privacy_reported_by == "rev0" and item.privacy_reported_at is not None
    [event] = recent_events(db_session, kind="item.personal_data")
    assert event.data["item_id"] == item.id and event.data["path"] == f"/review/items/{item.id}"
    # Out of the queue for everyone, the reviewer who reported it included (her claim ended).
    assert next_item(db_session, reviewer=rita, policy=policy) is None
    assert next_item(db_session, reviewer=sam, policy=policy) is None

    with pytest.raises(ReviewError, match="only operators"):
        redact_reported_item(db_session, item_id=item.id, text="x", context_texts=None, operator=sam)
    with pytest.raises(ReviewError, match="the question cannot be empty"):
        redact_reported_item(db_session, item_id=item.id, text="  ", context_texts=None, operator=operator)
    with pytest.raises(ReviewError, match="1 earlier turn.s. to redact, not 2"):
        redact_reported_item(
            db_session, item_id=item.id, text="x", context_texts=["a", "b"], operator=operator
        )
    redact_reported_item(
        db_session,
        item_id=item.id,
        text="I am [NAME] and my card is lost, call 07700 900123",  # the rules run over it too
        context_texts=["this is [NAME] again"],
        operator=operator,
    )
    assert item.text == "I am [NAME] and my card is lost, call [PHONE]"
    assert item.context[0]["text"] == "this is [NAME] again" and item.context[0]["status"] == "answered"
    assert item.privacy_reported_at is None and item.privacy_reported_by is None
    assert db_session.scalars(select(VerifiedPair.text)).all() == [item.text]
    assert next_item(db_session, reviewer=sam, policy=policy) is item  # back in the queue
    # The turn behind the question reads as the hand-redacted text: not under "Also asked", and its training
    # pair carries the hand-redacted text when the item resolves.
    assert item.hand_redacted_from == "I am Grace and my card is lost"
    assert member_questions(db_session, item=item, limit=None) == []
    db_session.execute(VerifiedPair.__table__.delete())
    for reviewer in (sam, *reviewers(db_session, 2, prefix="late")):
        judge(db_session, item, reviewer, "card_arrival", policy)
        if item.status == "resolved":
            break
    assert item.status == "resolved"
    assert db_session.scalars(select(VerifiedPair.text)).all() == [item.text]


def test_gold_accuracy_suspends_a_bad_reviewer(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=1.0, gold_min_answered=3, gold_min_accuracy=0.6)
    for i in range(4):
        add_gold_item(db_session, text=f"where is my card {i}", label="card_arrival", policy=policy)
    (bad,) = reviewers(db_session, 1)
    for _ in range(3):
        item = next_item(db_session, reviewer=bad, policy=policy, rng=random.Random(0))
        assert item is not None and item.is_gold
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=bad,
            label="exchange_rate",
            answer_ok=None,
            known_intents=INTENTS,
            policy=policy,
        )
    assert bad.suspended_at is not None and "0/3" in bad.suspended_reason
    [event] = recent_events(db_session, kind="reviewer.suspended")
    assert event.text == (
        f"Reviewer {bad.username} was suspended by the gold check: accuracy on gold 0/3 below 60%. "
        "Their judgements count as coin flips until an operator reinstates them."
    )
    assert event.data == {
        "reviewer": bad.username,
        "reason": bad.suspended_reason,
        "path": "/operator/accounts",
    }
    with pytest.raises(ReviewError, match="suspended"):
        next_item(db_session, reviewer=bad, policy=policy)
    stats = reviewer_stats(db_session, reviewer=bad)
    assert stats["gold_accuracy"] == 0.0 and stats["judgements"] == 3 and stats["suspended"]


def test_a_new_reviewer_practises_on_gold_with_feedback_then_reviews(db_session: Session) -> None:
    """No gold mixing at all (gold_rate 0): a new reviewer still gets the practice questions first, learns the
    expected answer after each, then real items; an operator skips the practice; gold never reveals itself
    after it."""
    policy = ReviewPolicy(gold_rate=0.0, qualification_items=3, gold_min_answered=3, gold_min_accuracy=0.6)
    real = route_turn(
        db_session,
        turn=make_turn(db_session, "real question"),
        reasons=["handoff"],
        embedding=vector(70),
        policy=policy,
    )
    golds = [
        add_gold_item(db_session, text=f"my card is late {i}", label="card_arrival", policy=policy)
        for i in range(4)
    ]
    (new,) = reviewers(db_session, 1)
    feedback = []
    for answer in ["card_arrival", "change_pin", "card_arrival"]:
        assert in_practice(new, policy)
        judged = answer_practice(db_session, new, answer, policy)
        feedback.append(practice_feedback(db_session, new, judged, answer, policy))
    assert [(f.number, f.of, f.chosen, f.expected, f.right) for f in feedback] == [
        (1, 3, "card_arrival", "card_arrival", True),
        (2, 3, "change_pin", "card_arrival", False),
        (3, 3, "card_arrival", "card_arrival", True),
    ]
    # 2 of 3 right (67 %, above 60 %): past the practice, real items, and gold stays hidden from now on.
    assert not in_practice(new, policy) and new.suspended_at is None
    assert next_item(db_session, reviewer=new, policy=policy) is real
    release_claim(db_session, item_id=real.id, reviewer=new)
    mixing = dataclasses.replace(policy, gold_rate=1.0)
    last_gold = next_item(db_session, reviewer=new, policy=mixing)  # the one gold item not answered yet
    assert last_gold in golds
    judged = submit_judgement(
        db_session,
        item_id=last_gold.id,
        reviewer=new,
        label="change_pin",
        answer_ok=None,
        known_intents=INTENTS,
        policy=mixing,
    )
    assert new.gold_answered == 4 and practice_feedback(db_session, new, judged, "change_pin", mixing) is None
    # An operator reviewing skips the practice.
    boss = create_user(db_session, username="boss", password="correct horse battery", role="operator")
    assert not in_practice(boss, policy) and next_item(db_session, reviewer=boss, policy=policy) is real
    # With no gold to practise on, a new reviewer starts on real items rather than waiting.
    (late,) = [create_user(db_session, username="late", password="correct horse battery", role="reviewer")]
    for gold in golds:
        gold.status = "resolved"
    db_session.flush()
    assert in_practice(late, policy) and next_item(db_session, reviewer=late, policy=policy) is real


def test_the_practice_is_as_long_as_the_check_questions_there_are(db_session: Session) -> None:
    """Two check questions and a practice of three: the reviewer is told "1 of 2", "2 of 2", not "of 3"."""
    policy = ReviewPolicy(gold_rate=0.0, qualification_items=3, gold_min_answered=3, gold_min_accuracy=0.6)
    for i in range(2):
        add_gold_item(db_session, text=f"my card is late {i}", label="card_arrival", policy=policy)
    (new,) = reviewers(db_session, 1)
    assert practice_available(db_session, reviewer=new) == 2
    told = []
    for _ in range(2):
        judged = answer_practice(db_session, new, "card_arrival", policy)
        feedback = practice_feedback(db_session, new, judged, "card_arrival", policy)
        assert feedback is not None
        told.append((feedback.number, feedback.of))
    assert told == [(1, 2), (2, 2)] and practice_available(db_session, reviewer=new) == 0


def test_failing_the_practice_suspends_before_any_real_item(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=0.0, qualification_items=3, gold_min_answered=3, gold_min_accuracy=0.6)
    route_turn(
        db_session,
        turn=make_turn(db_session, "real question"),
        reasons=["handoff"],
        embedding=vector(71),
        policy=policy,
    )
    for i in range(3):
        add_gold_item(db_session, text=f"my card is late {i}", label="card_arrival", policy=policy)
    (careless,) = reviewers(db_session, 1)
    for _ in range(3):
        answer_practice(db_session, careless, "exchange_rate", policy)
    assert careless.suspended_at is not None and careless.suspended_reason == "accuracy on gold 0/3 below 60%"
    with pytest.raises(ReviewError, match="suspended"):
        next_item(db_session, reviewer=careless, policy=policy)
    assert (
        db_session.scalar(
            select(func.count()).select_from(Judgement).join(ReviewItem).where(ReviewItem.is_gold.is_(False))
        )
        == 0
    )


def test_agreement_per_batch_is_alpha_per_week_of_routed_items(db_session: Session) -> None:
    """A batch is the items routed in one UTC week: last week's reviewers agreed on everything (alpha 1),
    this week's disagree on one item of two; an item older than the window and a check question stay out."""
    policy = ReviewPolicy(gold_rate=0.0)
    people = reviewers(db_session, 3)
    now = utcnow()
    monday = (now - timedelta(days=now.weekday())).replace(hour=12, minute=0, second=0, microsecond=0)
    plan = [
        (monday - timedelta(days=7), ["card_arrival"] * 3),
        (monday - timedelta(days=6), ["change_pin"] * 3),
        (monday, ["card_arrival", "card_arrival", "change_pin"]),
        (monday, ["exchange_rate"] * 3),
        (monday - timedelta(weeks=9), ["card_arrival", "change_pin", "exchange_rate"]),  # outside the window
    ]
    for number, (created, labels) in enumerate(plan):
        item = route_turn(
            db_session,
            turn=make_turn(db_session, f"batch question {number}"),
            reasons=["handoff"],
            embedding=vector(200 + number),
            policy=policy,
        )
        item.created_at = created
        for person, label in zip(people, labels, strict=True):
            db_session.add(Judgement(item_id=item.id, reviewer_id=person.id, label=label))
    gold = add_gold_item(db_session, text="my card is late", label="card_arrival", policy=policy)
    db_session.add(Judgement(item_id=gold.id, reviewer_id=people[0].id, label="change_pin"))
    db_session.flush()
    batches = weekly_agreement(db_session, weeks=8, now=now)
    assert [(b.week.date(), b.items, b.judgements) for b in batches] == [
        (monday.date(), 2, 6),
        ((monday - timedelta(days=7)).date(), 2, 6),
    ]
    this_week, last_week = batches
    assert last_week.alpha == 1.0
    # By hand, from the coincidence matrix (each ordered pair of an item's judgements weighs 1 / (3 - 1)):
    # o(A,A) = 1, o(A,B) = o(B,A) = 1, o(E,E) = 3; n = 6, n_A = 2, n_B = 1, n_E = 3;
    # alpha = 1 - (n - 1) * disagreeing / (n^2 - sum n_c^2) = 1 - 5 * 2 / (36 - 14) = 1 - 10 / 22.
    assert this_week.alpha == pytest.approx(1 - 10 / 22)


def test_accounts(db_session: Session) -> None:
    user = create_user(db_session, username="olivia", password="a long enough secret", role="operator")
    assert user.password_hash != "a long enough secret"
    assert authenticate(db_session, username="olivia", password="a long enough secret").id == user.id
    assert authenticate(db_session, username="olivia", password="wrong password!!") is None
    with pytest.raises(AccountError, match="already exists"):
        create_user(db_session, username="olivia", password="another long secret", role="reviewer")
    with pytest.raises(AccountError, match="at least 10"):
        create_user(db_session, username="short", password="tiny", role="reviewer")
    with pytest.raises(AccountError, match="role"):
        create_user(db_session, username="x_man", password="a long enough secret", role="admin")


def run_at_once(target: Any, arguments: Sequence[Any]) -> None:
    """``target(argument)`` for each argument, each in its own thread, all started together; waits."""
    threads = [threading.Thread(target=target, args=(argument,)) for argument in arguments]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


def meet_after(monkeypatch: Any, module: Any, name: str, parties: int = 2) -> None:
    """Patch ``module.name`` so that each call, once it has returned, waits until ``parties`` calls have (at
    most 3 s): the threads making them are all past that point before any goes on, unless one of them is
    held up before it (a lock), which is what the tests below look for."""
    barrier = threading.Barrier(parties)
    original = getattr(module, name)

    def patched(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            barrier.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return result

    monkeypatch.setattr(module, name, patched)


def clean_shared_schema(session: Session, *tables: Any, usernames_like: str | None = None) -> None:
    """The PostgreSQL schema is shared by the session's PostgreSQL tests: leave no committed rows behind."""
    for table in tables:
        session.execute(table.__table__.delete())
    if usernames_like is not None:
        session.execute(User.__table__.delete().where(User.username.like(usernames_like)))
    session.commit()


@pytest.mark.postgres
def test_concurrent_reviewers_never_over_assign(postgres_schema_url: str) -> None:
    """Twelve reviewers ask for work at once on PostgreSQL: each item gets at most its 3 claims."""
    from core.db import make_engine

    engine = make_engine(postgres_schema_url)
    with Session(engine) as session:
        session.execute(Judgement.__table__.delete())
        session.execute(Claim.__table__.delete())
        session.execute(ReviewItem.__table__.delete())
        items = [
            route_turn(
                session,
                turn=make_turn(session, f"question {i}"),
                reasons=["handoff"],
                embedding=vector(100 + i),
                policy=POLICY,
            )
            for i in range(4)
        ]
        people = [
            create_user(session, username=f"conc{i}", password="correct horse battery", role="reviewer")
            for i in range(12)
        ]
        session.commit()
        ids = [p.id for p in people]
        item_ids = {i.id for i in items}
    barrier = threading.Barrier(len(ids))
    claimed: list[int | None] = []
    lock = threading.Lock()

    def worker(user_id: int) -> None:
        from core.models import User

        with Session(engine) as session:
            user = session.get(User, user_id)
            barrier.wait()
            item = next_item(session, reviewer=user, policy=POLICY)
            session.commit()
            with lock:
                claimed.append(item.id if item else None)

    run_at_once(worker, ids)
    with Session(engine) as session:
        counts = dict(
            session.execute(
                select(Claim.item_id, func.count()).where(Claim.item_id.in_(item_ids)).group_by(Claim.item_id)
            ).all()
        )
        # The schema is shared by the whole session's PostgreSQL tests: leave no committed rows behind.
        session.execute(Claim.__table__.delete())
        session.execute(Judgement.__table__.delete())
        session.execute(ReviewItem.__table__.delete())
        session.execute(Turn.__table__.delete())
        session.execute(Conversation.__table__.delete())
        session.execute(User.__table__.delete().where(User.username.like("conc%")))
        session.commit()
    assert all(n <= 3 for n in counts.values()), counts
    assert sum(counts.values()) == len([c for c in claimed if c is not None]) == 12
    engine.dispose()


@pytest.mark.postgres
def test_two_answers_at_once_resolve_an_item_once(postgres_schema_url: str, monkeypatch: Any) -> None:
    """Two web processes take an item's last two answers at the same moment on PostgreSQL. Each would count
    the other's answer out, both would resolve the item and both would write its training pair; the item's
    row lock makes the second wait, then find the item settled (as if it had come a moment later)."""
    from core.db import make_engine
    from crowd_feedback import review

    engine = make_engine(postgres_schema_url)
    policy = ReviewPolicy(gold_rate=0.0, judgements=3, posterior_threshold=0.6, model_voter=False)

    tables = (VerifiedPair, Claim, Judgement, ReviewItem, Turn, Conversation)
    with Session(engine) as session:
        clean_shared_schema(session, *tables, usernames_like="race%")
        item = route_turn(
            session,
            turn=make_turn(session, "where is it"),
            reasons=["handoff"],
            embedding=vector(9),
            policy=policy,
        )
        people = [
            create_user(session, username=f"race{i}", password="correct horse battery", role="reviewer")
            for i in range(3)
        ]
        judge(session, item, people[0], "card_arrival", policy)
        for reviewer in people[1:]:
            assert next_item(session, reviewer=reviewer, policy=policy) is item
        session.commit()
        item_id, racers = item.id, [p.id for p in people[1:]]
    # Both answers are in their transactions before either resolves (unless the second waits for the first).
    meet_after(monkeypatch, review, "held_for")
    outcomes: list[str] = []

    def answer(user_id: int) -> None:
        with Session(engine) as session:
            try:
                submit_judgement(
                    session,
                    item_id=item_id,
                    reviewer=session.get(User, user_id),
                    label="card_arrival",
                    answer_ok=None,
                    known_intents=INTENTS,
                    policy=policy,
                )
                session.commit()
                outcomes.append("saved")
            except ReviewError as exc:
                session.rollback()
                outcomes.append(str(exc))

    run_at_once(answer, racers)
    with Session(engine) as session:
        pairs = session.scalars(select(VerifiedPair.text).where(VerifiedPair.item_id == item_id)).all()
        judged = session.scalar(
            select(func.count()).select_from(Judgement).where(Judgement.item_id == item_id)
        )
        status = session.get(ReviewItem, item_id).status
        clean_shared_schema(session, *tables, usernames_like="race%")
    engine.dispose()
    assert status == "resolved"
    assert sorted(outcomes) == ["saved", "this item is no longer open"], outcomes
    assert pairs == ["where is it"] and judged == 2


@pytest.mark.postgres
def test_two_routers_joining_one_item_at_once_count_both(postgres_schema_url: str, monkeypatch: Any) -> None:
    """The routers of two web processes put look-alike questions into one item at the same moment: both are
    counted (the item's row is locked before its cluster size is read and written)."""
    from core.db import make_engine
    from crowd_feedback import review

    engine = make_engine(postgres_schema_url)

    base = vector(11)
    with Session(engine) as session:
        clean_shared_schema(session, ReviewItem, Turn, Conversation)
        item = route_turn(
            session,
            turn=make_turn(session, "where is it"),
            reasons=["handoff"],
            embedding=base,
            policy=POLICY,
        )
        turns = [make_turn(session, f"where is it {i}").id for i in range(2)]
        session.commit()
        item_id = item.id
    # Both have read the item (cluster size 1) before either joins it.
    meet_after(monkeypatch, review, "similar_pending_item")
    joined: list[int | None] = []

    def route(turn_id: int) -> None:
        with Session(engine) as session:
            routed = route_turn(
                session,
                turn=session.get(Turn, turn_id),
                reasons=["handoff"],
                embedding=base + 0.01,
                policy=POLICY,
            )
            session.commit()
            joined.append(routed.id if routed else None)

    run_at_once(route, turns)
    with Session(engine) as session:
        size = session.get(ReviewItem, item_id).cluster_size
        members = session.scalar(
            select(func.count()).select_from(ReviewItemTurn).where(ReviewItemTurn.item_id == item_id)
        )
        clean_shared_schema(session, ReviewItem, Turn, Conversation)
    engine.dispose()
    assert joined == [item_id, item_id]
    assert (size, members) == (3, 3)


def test_a_question_never_joins_an_item_settled_since_it_was_found(
    db_session: Session, monkeypatch: Any
) -> None:
    from crowd_feedback import review

    base = vector(12)
    item = route_turn(
        db_session,
        turn=make_turn(db_session, "where is it"),
        reasons=["handoff"],
        embedding=base,
        policy=POLICY,
    )
    monkeypatch.setattr(review, "similar_pending_item", lambda *args: item)  # found while it was pending
    item.status = "resolved"
    db_session.flush()
    routed = route_turn(
        db_session,
        turn=make_turn(db_session, "where is it now"),
        reasons=["handoff"],
        embedding=base,
        policy=POLICY,
    )
    assert routed is not None and routed is not item and routed.status == "pending"
    quiet = make_turn(db_session, "where is it, really", status="answered", confidence=0.99)
    assert attach_similar_turn(db_session, turn=quiet, embedding=base, policy=POLICY) is None
    assert item.cluster_size == 1


def test_bulk_reaggregation_resolves_confident_items_and_is_idempotent(db_session: Session) -> None:
    from crowd_feedback.review import reaggregate

    policy = ReviewPolicy(gold_rate=0.0, judgements=3, posterior_threshold=0.9)
    people = reviewers(db_session, 4)
    rng = np.random.default_rng(0)
    items = []
    for i in range(12):
        item = route_turn(
            db_session,
            turn=make_turn(db_session, f"bulk question {i}"),
            reasons=["handoff"],
            embedding=vector(300 + i),
            policy=policy,
        )
        truth = INTENTS[i % 3]
        for reviewer in people[:3]:
            label = truth if reviewer is not people[2] or rng.random() < 0.7 else INTENTS[(i + 1) % 3]
            db_session.add(Judgement(item_id=item.id, reviewer_id=reviewer.id, label=label))
        items.append((item, truth))
    db_session.flush()
    summary = reaggregate(db_session, method="dawid_skene", known_intents=INTENTS, policy=policy)
    assert summary["items"] == 12 and summary["resolved"] >= 6
    for item, truth in items:
        db_session.refresh(item)
        if item.status == "resolved":
            assert item.resolved_label == truth and item.resolved_confidence >= 0.9
    pairs = db_session.scalars(select(VerifiedPair)).all()
    assert len(pairs) == summary["pairs"] == summary["resolved"]
    again = reaggregate(db_session, method="dawid_skene", known_intents=INTENTS, policy=policy)
    assert again["resolved"] == 0 and again["changed"] == 0
    assert len(db_session.scalars(select(VerifiedPair)).all()) == len(pairs)


@pytest.mark.parametrize("history", ["earned", "wrong", "none", "off"])
def test_the_bots_shortlist_is_the_prior_trusted_as_far_as_it_earned(
    db_session: Session, history: str
) -> None:
    """Two reviewers split; the bot's shortlist (90 % one side) settles it without a third person once its
    shortlists have predicted the people's labels on resolved items. With a history of wrong shortlists, none
    at all, or the bot left out of the policy, a third judgement is asked for."""
    from crowd_feedback.review import shortlist_trust

    policy = ReviewPolicy(gold_rate=0.0, judgements=3, model_voter=history != "off")
    shortlist = [
        {"intent": "card_arrival", "probability": 0.9},
        {"intent": "change_pin", "probability": 0.05},
    ]
    people = reviewers(db_session, 2)
    if history in ("earned", "wrong"):
        for i in range(110):  # the people agreed with the shortlist's top 95 times (or never, when wrong)
            right = history == "earned" and i < 95
            past = ReviewItem(
                text=f"past {i}",
                status="resolved",
                candidates=shortlist,
                resolved_label="card_arrival" if right else "exchange_rate",
                resolved_confidence=0.95,
            )
            db_session.add(past)
            db_session.flush()
            # the last ten were settled by one person and the shortlist: they earn it nothing
            for reviewer in people[: 1 if i >= 100 else 2]:
                db_session.add(Judgement(item_id=past.id, reviewer_id=reviewer.id, label=past.resolved_label))
        db_session.flush()
    trust = shortlist_trust(db_session, known_intents=INTENTS)
    # the grid's best exponent (1 when it predicted well, 0 when not), shrunk while history is short
    assert trust == pytest.approx(100 / 120 if history == "earned" else 0.0)
    turn = make_turn(db_session, "split decision", status="clarify", confidence=0.9, top="change_pin")
    turn.candidates = [
        {"intent": "change_pin", "probability": 0.9},
        {"intent": "card_arrival", "probability": 0.05},
    ]
    item = route_turn(db_session, turn=turn, reasons=["clarify"], embedding=vector(40), policy=policy)
    assert item.bot_intent == "change_pin" and item.candidates[0]["probability"] == pytest.approx(0.9)
    for reviewer, label in zip(people, ["change_pin", "card_arrival"], strict=True):
        judge(db_session, item, reviewer, label, policy)
    db_session.refresh(item)
    if history == "earned":
        assert item.status == "resolved" and item.resolved_label == "change_pin"
        assert 0.9 <= item.resolved_confidence < 0.999
    else:
        assert item.status == "pending" and item.resolved_label is None


def test_the_bots_out_of_scope_candidate_weighs_for_none_fits(db_session: Session) -> None:
    """A bot that learnt a topic as out of scope (from earlier "none fits" answers) says so on a new item
    of it: with the shortlist's trust earned, a split between "none fits" and an intent is settled as none
    fits, as a split toward its top intent would be."""
    from crowd_feedback.review import item_shortlist

    assert item_shortlist(
        [{"intent": "oos", "probability": 0.8}, {"intent": "change_pin", "probability": 0.1}, {"intent": ""}]
    ) == [(NEW_INTENT, 0.8), ("change_pin", 0.1)]
    policy = ReviewPolicy(gold_rate=0.0, judgements=3, model_voter=True)
    people = reviewers(db_session, 2)
    shortlist = [{"intent": "card_arrival", "probability": 0.9}, {"intent": "oos", "probability": 0.05}]
    for i in range(110):  # the people agreed with the shortlist's top 95 times: trust earned
        past = ReviewItem(
            text=f"past {i}",
            status="resolved",
            candidates=shortlist,
            resolved_label="card_arrival" if i < 95 else "exchange_rate",
            resolved_confidence=0.95,
        )
        db_session.add(past)
        db_session.flush()
        for reviewer in people[: 1 if i >= 100 else 2]:  # the last ten settled by one person: not counted
            db_session.add(Judgement(item_id=past.id, reviewer_id=reviewer.id, label=past.resolved_label))
    db_session.flush()
    turn = make_turn(db_session, "do you do mortgages", status="handoff", confidence=0.9, top="oos")
    turn.candidates = [{"intent": "oos", "probability": 0.9}, {"intent": "change_pin", "probability": 0.05}]
    item = route_turn(db_session, turn=turn, reasons=["handoff"], embedding=vector(42), policy=policy)
    for reviewer, label in zip(people, [NEW_INTENT, "change_pin"], strict=True):
        judge(db_session, item, reviewer, label, policy, new_intent_text="mortgages")
    db_session.refresh(item)
    assert item.status == "resolved" and item.resolved_label == NEW_INTENT


def test_the_bot_alone_never_resolves_and_never_votes_on_gold(db_session: Session) -> None:
    from crowd_feedback.review import item_posterior

    policy = ReviewPolicy(gold_rate=0.0, model_voter=True)
    turn = make_turn(db_session, "sure thing", status="answered", confidence=0.99, top="change_pin")
    item = route_turn(db_session, turn=turn, reasons=["audit"], embedding=vector(41), policy=policy)
    people = reviewers(db_session, 1)
    # no judgement yet: the posterior is flat, the bot's vote waits for a person
    flat = item_posterior(db_session, item=item, known_intents=INTENTS, policy=policy)
    assert max(flat.values()) == pytest.approx(min(flat.values()))
    gold = add_gold_item(db_session, text="gold question", label="card_arrival", policy=policy)
    gold.bot_intent, gold.bot_confidence = "change_pin", 0.99
    db_session.add(Judgement(item_id=gold.id, reviewer_id=people[0].id, label="card_arrival"))
    db_session.flush()
    posterior = item_posterior(db_session, item=gold, known_intents=INTENTS, policy=policy)
    assert max(posterior, key=lambda label: posterior[label]) == "card_arrival"
    assert posterior["change_pin"] == pytest.approx(posterior["exchange_rate"])


def test_bulk_reaggregation_takes_the_bots_shortlist_as_the_prior(db_session: Session) -> None:
    from crowd_feedback.review import reaggregate

    people = reviewers(db_session, 2)
    items = []
    for i in range(9):
        truth = INTENTS[i % 3]
        turn = make_turn(db_session, f"split {i}", status="clarify", confidence=0.9, top=truth)
        item = route_turn(
            db_session, turn=turn, reasons=["clarify"], embedding=vector(500 + i), policy=POLICY
        )
        # the reviewers split on the first three items; the bot's shortlist (90 % the truth) settles them, as
        # it earned full trust on the six where the people agreed with it
        second = INTENTS[(i + 1) % 3] if i < 3 else truth
        db_session.add(Judgement(item_id=item.id, reviewer_id=people[0].id, label=truth))
        db_session.add(Judgement(item_id=item.id, reviewer_id=people[1].id, label=second))
        items.append((item, truth))
    db_session.flush()
    without = reaggregate(
        db_session, method="one_coin", known_intents=INTENTS, policy=ReviewPolicy(model_voter=False)
    )
    split = [item for item, _ in items[:3]]
    assert all(item.status == "pending" for item in split) and without["resolved"] == 6
    with_bot = reaggregate(db_session, method="one_coin", known_intents=INTENTS, policy=POLICY)
    assert with_bot["resolved"] == 3
    for item, truth in items:
        db_session.refresh(item)
        assert item.status == "resolved" and item.resolved_label == truth


def test_the_newest_judged_items_give_a_bounded_read_of_the_judgements(db_session: Session) -> None:
    people = reviewers(db_session, 2)
    items = []
    for i in range(4):
        item = ReviewItem(
            text=f"q{i}", status="resolved", resolved_label="change_pin", resolved_confidence=0.95
        )
        db_session.add(item)
        items.append(item)
    gold = ReviewItem(text="gold", status="pending", is_gold=True, gold_label="change_pin")
    db_session.add(gold)
    db_session.flush()
    for item in [*items[:3], gold]:  # the fourth item has no judgement: it is not a judged item
        for person in people:
            db_session.add(Judgement(item_id=item.id, reviewer_id=person.id, label="change_pin"))
    db_session.flush()
    everything = judgement_answers(db_session)
    assert {a.item for a in everything} == {str(item.id) for item in items[:3]}  # gold items never count
    newest = judgement_answers(db_session, latest=2)
    assert len(newest) == 4 and {a.item for a in newest} == {str(items[1].id), str(items[2].id)}
