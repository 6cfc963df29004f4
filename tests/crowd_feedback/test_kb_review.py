"""Asking reviewers about a knowledge-base example the check flagged: a review item shown with the bot's
held-out view (never its label); the crowd confirming the label keeps the example, another label is shown
to the operator and writes no training pair."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kb_files import IntentData, KnowledgeBaseData
from core.knowledge_base import import_knowledge_base, kept_examples, move_example
from core.models import ReviewItem, VerifiedPair
from crowd_feedback.gold import BotView
from crowd_feedback.kb_review import KB_CHECK_UNCERTAINTY, ask_reviewers, asked_about
from crowd_feedback.review import KB_CHECK, ReviewError, ReviewPolicy, find_items, next_item, submit_judgement
from tests.crowd_feedback.test_review import reviewers

POLICY = ReviewPolicy(audit_rate=0.0, gold_rate=0.0, qualification_items=0, model_voter=False)
INTENTS = ["card_arrival", "change_pin", "lost_card"]
VIEW = BotView(
    intent="lost_card",
    answer="Freeze it in the app.",
    confidence=0.7,
    candidates=[
        {"intent": "lost_card", "probability": 0.7, "title": "Lost card"},
        {"intent": "card_arrival", "probability": 0.2, "title": "Card arrival"},
    ],
)


def settle(
    session: Session,
    item: ReviewItem,
    people: list[Any],
    label: str,
    *,
    policy: ReviewPolicy = POLICY,
    known_intents: list[str] = INTENTS,
) -> int:
    """Reviewers answer ``label`` until the item leaves the queue; how many answered."""
    answered = 0
    for person in people:
        if item.status != "pending":
            break
        assert next_item(session, reviewer=person, policy=policy) is item
        submit_judgement(
            session,
            item_id=item.id,
            reviewer=person,
            label=label,
            answer_ok=None,
            new_intent_text="post delivery of cards" if label == "new_intent" else None,
            known_intents=known_intents,
            policy=policy,
        )
        answered += 1
    return answered


def seed(session: Session) -> None:
    kb = KnowledgeBaseData(
        {
            "card_arrival": IntentData(
                "card_arrival", answer="Soon.", examples=["where is my card", "my card never came"]
            ),
            "change_pin": IntentData("change_pin", answer="At any ATM.", examples=["new pin", "pin change"]),
            "lost_card": IntentData(
                "lost_card", answer="Freeze it.", examples=["I lost my card", "card gone"]
            ),
        }
    )
    import_knowledge_base(session, incoming=kb, source="test")


def test_asking_makes_one_review_item_with_the_held_out_view_not_the_label(db_session: Session) -> None:
    seed(db_session)
    item, created = ask_reviewers(
        db_session, text="my card never came", intent="card_arrival", view=VIEW, policy=POLICY
    )
    assert created and item.reasons == [KB_CHECK] and item.kb_intent == "card_arrival"
    assert (item.bot_intent, item.bot_confidence, item.required_judgements) == ("lost_card", 0.7, 3)
    assert [c["intent"] for c in item.candidates] == ["lost_card", "card_arrival"]
    # Ranked as a coin between the knowledge base and the bot, not by the bot's (high) confidence.
    assert item.uncertainty == KB_CHECK_UNCERTAINTY == 0.5 and not item.is_gold and item.gold_label is None
    again, created_again = ask_reviewers(
        db_session, text="My card never came?", intent="card_arrival", view=VIEW, policy=POLICY
    )
    assert again is item and not created_again
    with pytest.raises(ReviewError, match="not an example of 'change_pin'"):
        ask_reviewers(db_session, text="my card never came", intent="change_pin", view=None, policy=POLICY)
    bare, _ = ask_reviewers(db_session, text="pin change", intent="change_pin", view=None, policy=POLICY)
    assert bare.candidates == [] and bare.uncertainty == 0.5
    found, total = find_items(db_session, status="pending", reason=KB_CHECK)
    assert total == 2 and [i.id for i in found] == [item.id, bare.id]  # the older first (ageing)
    asked = asked_about(db_session)
    assert asked[("my card never came", "card_arrival")].status == "pending"
    assert asked[("my card never came", "card_arrival")].answers == 0


def test_the_crowd_confirming_the_label_keeps_the_example_and_another_label_writes_no_pair(
    db_session: Session,
) -> None:
    seed(db_session)
    people = reviewers(db_session, 3)
    confirmed, _ = ask_reviewers(
        db_session, text="my card never came", intent="card_arrival", view=VIEW, policy=POLICY
    )
    settle(db_session, confirmed, people, "card_arrival")
    assert confirmed.status == "resolved" and confirmed.resolved_label == "card_arrival"
    kept = kept_examples(db_session)[("my card never came", "card_arrival")]
    assert kept.kept_by == f"reviewers (item #{confirmed.id})"

    disputed, _ = ask_reviewers(db_session, text="card gone", intent="lost_card", view=VIEW, policy=POLICY)
    answered = settle(db_session, disputed, people, "card_arrival")
    assert disputed.status == "resolved" and disputed.resolved_label == "card_arrival"
    assert ("card gone", "lost_card") not in kept_examples(db_session)
    pairs = db_session.scalars(
        select(VerifiedPair).where(VerifiedPair.item_id.in_([confirmed.id, disputed.id]))
    )
    assert list(pairs) == []  # no pair: it would file the question under two intents until someone moves it
    verdict = asked_about(db_session)[("card gone", "lost_card")]
    assert (verdict.status, verdict.label, verdict.answers) == ("resolved", "card_arrival", answered)
    assert verdict.confidence is not None and verdict.confidence >= POLICY.posterior_threshold


def test_an_example_moved_before_the_crowd_confirms_it_is_not_kept(db_session: Session) -> None:
    seed(db_session)
    people = reviewers(db_session, 3)
    item, _ = ask_reviewers(db_session, text="card gone", intent="lost_card", view=VIEW, policy=POLICY)
    move_example(
        db_session, text="card gone", from_intent="lost_card", to_intent="card_arrival", actor="omar"
    )
    settle(db_session, item, people, "lost_card")
    assert item.status == "resolved" and kept_examples(db_session) == {}
    assert db_session.get(ReviewItem, item.id) is item


def test_the_crowd_filing_a_knowledge_base_question_elsewhere_tells_the_operators(
    db_session: Session,
) -> None:
    from core.knowledge_base import filed_elsewhere
    from core.models import OpsEvent
    from crowd_feedback.review import route_turn
    from tests.conftest import add_turn

    seed(db_session)
    assert filed_elsewhere(db_session, texts=["Card  GONE!", "new pin"], intent="card_arrival") == [
        ("new pin", "change_pin"),
        ("Card  GONE!", "lost_card"),
    ]
    assert filed_elsewhere(db_session, texts=["card gone"], intent="lost_card") == []
    assert filed_elsewhere(db_session, texts=["card gone already"], intent="card_arrival") == []
    people = reviewers(db_session, 3)
    turn = add_turn(db_session, None, "Card gone?", status="handoff")
    item = route_turn(db_session, turn=turn, reasons=["handoff"], embedding=None, policy=POLICY)
    assert item is not None
    settle(db_session, item, people, "card_arrival")
    assert item.status == "resolved"
    [event] = db_session.scalars(select(OpsEvent).where(OpsEvent.kind == "knowledge.disputed")).all()
    assert event.text == (
        f"Reviewers filed “Card gone?” under card_arrival (item {item.id}); the knowledge base has it under "
        "lost_card. One of them is wrong: check the knowledge base."
    )
    assert event.data["questions"] == [{"text": "Card gone?", "knowledge_base_intent": "lost_card"}]
    assert event.data["path"] == "/operator/knowledge/check#conflicts"
    # The crowd agreeing with the knowledge base is no news.
    agreeing = route_turn(
        db_session,
        turn=add_turn(db_session, None, "new pin", status="handoff"),
        reasons=["handoff"],
        embedding=None,
        policy=POLICY,
    )
    assert agreeing is not None
    settle(db_session, agreeing, people, "change_pin")
    assert (
        db_session.scalar(
            select(func.count()).select_from(OpsEvent).where(OpsEvent.kind == "knowledge.disputed")
        )
        == 1
    )


def test_none_fits_trains_as_out_of_scope_except_what_the_knowledge_base_has(db_session: Session) -> None:
    """ "None fits" on a customer's question writes it as an out-of-scope pair that a training run learns;
    on a question the knowledge base asked about (or one it has as an example) the knowledge base wins."""
    from core.models import OpsEvent
    from crowd_feedback.review import route_turn
    from tests.conftest import add_turn
    from training.build import training_snapshot

    seed(db_session)
    people = reviewers(db_session, 3)
    asked, _ = ask_reviewers(db_session, text="card gone", intent="lost_card", view=VIEW, policy=POLICY)
    settle(db_session, asked, people, "new_intent")
    assert asked.status == "resolved" and asked.resolved_label == "new_intent"
    assert db_session.scalars(select(VerifiedPair).where(VerifiedPair.item_id == asked.id)).all() == []

    items = []
    for text in ("can I get a mortgage", "Pin change!"):  # the second is a knowledge-base example
        item = route_turn(
            db_session,
            turn=add_turn(db_session, None, text, status="handoff"),
            reasons=["handoff"],
            embedding=None,
            policy=POLICY,
        )
        assert item is not None
        settle(db_session, item, people, "new_intent")
        assert item.status == "resolved"
        items.append(item)
    pairs = db_session.execute(
        select(VerifiedPair.item_id, VerifiedPair.text, VerifiedPair.intent).order_by(VerifiedPair.id)
    ).all()
    assert [tuple(p) for p in pairs] == [
        (items[0].id, "can I get a mortgage", "oos"),
        (items[1].id, "Pin change!", "oos"),
    ]
    [event] = db_session.scalars(select(OpsEvent).where(OpsEvent.kind == "knowledge.disputed")).all()
    assert event.text == (
        f"Reviewers found no intent for “Pin change!” (item {items[1].id}); the knowledge base has it under "
        "change_pin. One of them is wrong: check the knowledge base."
    )

    snapshot = training_snapshot(db_session)
    rows = list(zip(snapshot.texts, snapshot.labels, strict=True))
    assert ("can I get a mortgage", "oos") in rows and ("Pin change!", "oos") not in rows
    assert ("pin change", "change_pin") in rows  # the knowledge base's own example stays
    assert (snapshot.crowd_pairs, snapshot.out_of_scope_pairs) == (1, 1)
    # Settings.none_fits_out_of_scope off: reviewers' "none fits" teaches nothing.
    off = training_snapshot(db_session, none_fits=False)
    assert "oos" not in off.labels and (off.crowd_pairs, off.out_of_scope_pairs) == (0, 0)
