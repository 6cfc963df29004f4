"""New-intent suggestions: listed most asked first, adopted as a new intent, added to an existing one or
dismissed; every decision is kept out of bulk re-aggregation's reach."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.kb_files import IntentData, KnowledgeBaseData
from core.knowledge_base import import_knowledge_base, latest_kb_version, load_knowledge_base
from core.models import Intent, ReviewItem, VerifiedPair
from crowd_feedback.review import (
    NEW_INTENT,
    ReviewPolicy,
    add_gold_item,
    attach_similar_turn,
    operator_resolve,
    reaggregate,
    route_turn,
)
from crowd_feedback.suggestions import (
    SuggestionError,
    adopt_suggestions,
    count_suggestions,
    dismiss_suggestion,
    intent_suggestions,
    open_suggestion,
)
from tests.crowd_feedback.test_review import INTENTS, judge, make_turn, reviewers, vector

POLICY = ReviewPolicy(gold_rate=0.0, judgements=3)


def knowledge_base(session: Session) -> None:
    kb = KnowledgeBaseData(
        {
            name: IntentData(name=name, answer=f"About {name}.", examples=[f"{name} question"])
            for name in INTENTS
        }
    )
    import_knowledge_base(session, incoming=kb, source="test")


def suggested_item(
    session: Session, people: list[Any], texts: list[str], proposals: list[str], seed: int
) -> ReviewItem:
    """An item of len(texts) member questions that ``people`` resolve as a new intent."""
    base = vector(seed)
    item = route_turn(
        session, turn=make_turn(session, texts[0]), reasons=["handoff"], embedding=base, policy=POLICY
    )
    assert item is not None
    for text in texts[1:]:
        joined = attach_similar_turn(
            session, turn=make_turn(session, text), embedding=vector(seed + 1, base, 0.01), policy=POLICY
        )
        assert joined is item
    for reviewer, proposal in zip(people, proposals, strict=False):
        if item.status != "pending":  # two agreeing judgements already resolved it
            break
        judge(session, item, reviewer, NEW_INTENT, POLICY, new_intent_text=proposal)
        session.refresh(item)
    session.refresh(item)
    return item


def resolved_item(session: Session, people: list[Any], seed: int) -> ReviewItem:
    """An item two reviewers resolve with a known intent (not a suggestion)."""
    item = route_turn(
        session, turn=make_turn(session, "pin?"), reasons=["clarify"], embedding=vector(seed), policy=POLICY
    )
    assert item is not None
    for reviewer in people[:2]:  # two agreeing judgements resolve it
        judge(session, item, reviewer, "change_pin", POLICY)
    session.refresh(item)
    assert item.status == "resolved"
    return item


def test_suggestions_are_listed_most_asked_first_with_redacted_questions_and_merged_proposals(
    db_session: Session,
) -> None:
    people = reviewers(db_session, 3)
    small = suggested_item(db_session, people, ["do you do crypto"], ["crypto", " Crypto"], 10)
    big = suggested_item(
        db_session,
        people,
        ["can I get a metal card", "metal card please, mail me at jo@example.com", "can I get a metal card"],
        ["premium card", "metal  card"],
        20,
    )
    assert small.status == big.status == "resolved" and big.resolved_label == NEW_INTENT
    # Not suggestions: an item resolved with a known intent, a pending one, a gold one.
    resolved_item(db_session, people, 30)
    route_turn(
        db_session,
        turn=make_turn(db_session, "hmm"),
        reasons=["clarify"],
        embedding=vector(40),
        policy=POLICY,
    )
    add_gold_item(db_session, text="gold question", label="change_pin", policy=POLICY)

    rows = intent_suggestions(db_session)
    assert [r.item_id for r in rows] == [big.id, small.id]
    assert count_suggestions(db_session) == 2
    first = rows[0]
    assert first.asked == 3 and first.question == "can I get a metal card"
    assert first.questions == ["can I get a metal card", "metal card please, mail me at [EMAIL]"]
    assert first.proposals == [("metal card", 1), ("premium card", 1)]
    assert first.reviewers == 2 and first.labels == {NEW_INTENT: 2}
    assert first.first_asked is not None and first.last_asked is not None
    assert rows[1].proposals == [("crypto", 2)]


def test_adopting_creates_the_intent_from_the_member_questions_and_settles_the_items(
    db_session: Session,
) -> None:
    knowledge_base(db_session)
    versions_before = latest_kb_version(db_session).id
    people = reviewers(db_session, 3)
    one = suggested_item(
        db_session, people, ["metal card?", "a metal card, call me on +44 20 7946 0958"], ["metal"] * 3, 50
    )
    two = suggested_item(db_session, people, ["do you have metal cards", "metal card?"], ["metal"] * 3, 60)
    # Resolved "none fits": until an intent is made of them, the questions train as out of scope (redacted,
    # the reviewers' posterior as weight).
    pairs = db_session.execute(select(VerifiedPair.item_id, VerifiedPair.text, VerifiedPair.intent)).all()
    assert sorted(pairs) == sorted(
        [
            (one.id, "metal card?", "oos"),
            (one.id, "a metal card, call me on [PHONE]", "oos"),
            (two.id, "do you have metal cards", "oos"),
            (two.id, "metal card?", "oos"),
        ]
    )
    assert {p.weight for p in db_session.scalars(select(VerifiedPair))} == {one.resolved_confidence}
    adopted = adopt_suggestions(
        db_session,
        item_ids=[one.id, two.id, one.id],
        name="metal_card",
        title="Metal card",
        answer="We do not offer metal cards yet.",
        actor="omar",
    )
    assert adopted.intent == "metal_card" and adopted.items == [one.id, two.id]
    kb = load_knowledge_base(db_session)
    intent = kb.intents["metal_card"]
    assert intent.examples == ["metal card?", "a metal card, call me on [PHONE]", "do you have metal cards"]
    assert (intent.title, intent.answer) == ("Metal card", "We do not offer metal cards yet.")
    assert adopted.examples == 3 and set(kb.intents) == {*INTENTS, "metal_card"}
    version = latest_kb_version(db_session)
    assert version.id == adopted.kb_version_id > versions_before
    assert f"review items {one.id}, {two.id}" in version.source and "omar" in version.source
    for item in (one, two):
        db_session.refresh(item)
        assert (item.status, item.resolved_label, item.resolved_confidence) == ("resolved", "metal_card", 1.0)
        assert item.settled_by == "omar" and item.settled_at is not None
    assert intent_suggestions(db_session) == [] and count_suggestions(db_session) == 0
    assert db_session.scalar(select(func.count()).select_from(VerifiedPair)) == 0
    # Bulk re-aggregation would put "new_intent" back (every judgement says so): settled items are left alone.
    summary = reaggregate(db_session, method="majority", known_intents=INTENTS, policy=POLICY)
    assert summary["items"] == 2 and summary["changed"] == 0
    db_session.refresh(one)
    assert one.resolved_label == "metal_card"
    with pytest.raises(SuggestionError, match="not an open new-intent suggestion"):
        adopt_suggestions(db_session, item_ids=[one.id], name="metal_card_2", answer="x", actor="omar")


@pytest.mark.parametrize(
    ("name", "answer", "items", "message"),
    [
        ("metal card", "Yes.", "open", "name: intent name 'metal card' must start with a letter or digit"),
        ("", "Yes.", "open", "name: intent name is missing"),
        ("metal_card", "   ", "open", "answer: is empty"),
        ("change_pin", "Yes.", "open", "intent 'change_pin' already exists"),
        ("metal_card", "Yes.", "none", "choose at least one suggestion"),
        ("metal_card", "Yes.", "known", "is not an open new-intent suggestion"),
        ("metal_card", "Yes.", "missing", "review item 999999 is not an open new-intent suggestion"),
    ],
)
def test_a_bad_adoption_is_refused_with_a_reason_and_writes_nothing(
    db_session: Session, name: str, answer: str, items: str, message: str
) -> None:
    knowledge_base(db_session)
    people = reviewers(db_session, 3)
    item = suggested_item(db_session, people, ["metal card?"], ["metal"] * 3, 70)
    known = resolved_item(db_session, people, 80)
    ids = {"open": [item.id], "none": [], "known": [item.id, known.id], "missing": [item.id, 999999]}[items]
    version = latest_kb_version(db_session).id
    intents = db_session.scalar(select(func.count()).select_from(Intent))
    with pytest.raises(SuggestionError, match=message):
        adopt_suggestions(db_session, item_ids=ids, name=name, answer=answer, actor="omar")
    assert latest_kb_version(db_session).id == version
    assert db_session.scalar(select(func.count()).select_from(Intent)) == intents
    db_session.refresh(item)
    assert item.resolved_label == NEW_INTENT and item.settled_by is None
    assert [s.item_id for s in intent_suggestions(db_session)] == [item.id]


def test_dismissed_and_operator_settled_suggestions_leave_the_list_and_stay_as_decided(
    db_session: Session,
) -> None:
    from core.models import User

    people = reviewers(db_session, 3)
    operator = User(username="omar", password_hash="x", role="operator")
    db_session.add(operator)
    dismissed = suggested_item(db_session, people, ["what is the meaning of life"], ["philosophy"] * 3, 90)
    existing = suggested_item(db_session, people, ["my pin needs changing"], ["pin"] * 3, 100)
    dismiss_suggestion(db_session, item_id=dismissed.id, actor="omar", policy=POLICY)
    db_session.refresh(dismissed)
    assert (dismissed.resolved_label, dismissed.settled_by) == (NEW_INTENT, "omar")
    # Settled "none fits" by the operator: the question stays out of scope for training, at weight 1.
    assert dismissed.resolved_confidence == 1.0
    assert [
        (p.text, p.intent, p.weight)
        for p in db_session.scalars(select(VerifiedPair).where(VerifiedPair.item_id == dismissed.id))
    ] == [("what is the meaning of life", "oos", 1.0)]
    with pytest.raises(SuggestionError):
        dismiss_suggestion(db_session, item_id=dismissed.id, actor="omar", policy=POLICY)
    assert open_suggestion(db_session, item_id=existing.id) is existing
    operator_resolve(
        db_session,
        item_id=existing.id,
        label="change_pin",
        known_intents=INTENTS,
        operator=operator,
        policy=POLICY,
    )
    db_session.refresh(existing)
    assert (existing.resolved_label, existing.settled_by) == ("change_pin", "omar")
    pairs = db_session.scalars(select(VerifiedPair).where(VerifiedPair.item_id == existing.id)).all()
    assert [(p.text, p.intent, p.weight) for p in pairs] == [("my pin needs changing", "change_pin", 1.0)]
    assert intent_suggestions(db_session) == []
    # Re-aggregation keeps both decisions (the judgements all say "new intent").
    reaggregate(db_session, method="majority", known_intents=INTENTS, policy=POLICY)
    db_session.refresh(existing)
    assert existing.resolved_label == "change_pin"
    assert sorted(db_session.scalars(select(VerifiedPair.intent))) == ["change_pin", "oos"]


def test_an_escalated_item_led_by_new_intent_is_a_suggestion_showing_the_disagreement(
    db_session: Session,
) -> None:
    policy = ReviewPolicy(gold_rate=0.0, judgements=3, max_judgements=4)
    people = reviewers(db_session, 4)
    item = route_turn(
        db_session,
        turn=make_turn(db_session, "odd one"),
        reasons=["handoff"],
        embedding=vector(110),
        policy=policy,
    )
    assert item is not None
    from crowd_feedback.review import next_item, submit_judgement

    for reviewer, label in zip(people, [NEW_INTENT, "change_pin", "exchange_rate", NEW_INTENT], strict=True):
        assert next_item(db_session, reviewer=reviewer, policy=policy) is item
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=reviewer,
            label=label,
            answer_ok=None,
            new_intent_text="odd" if label == NEW_INTENT else None,
            known_intents=INTENTS,
            policy=policy,
        )
    db_session.refresh(item)
    if item.status != "escalated":
        pytest.fail(f"expected an escalation, got {item.status} {item.resolved_label}")
    (row,) = intent_suggestions(db_session)
    assert row.status == "escalated"
    assert row.labels == {NEW_INTENT: 2, "change_pin": 1, "exchange_rate": 1}
    assert row.proposals == [("odd", 2)]


def test_reaggregation_writes_the_out_of_scope_pairs_a_suggestion_resolved_before_lacks(
    db_session: Session,
) -> None:
    """Items resolved "none fits" before such questions were trained as out of scope wrote no pairs: bulk
    re-aggregation writes them once (an upgraded deployment's existing suggestions teach the next run)."""
    knowledge_base(db_session)
    people = reviewers(db_session, 3)
    item = suggested_item(
        db_session, people, ["do you do mortgages", "mortgage rates?"], ["mortgage"] * 3, 70
    )
    db_session.execute(delete(VerifiedPair))  # as a resolution of the earlier version left it
    summary = reaggregate(db_session, method="majority", known_intents=INTENTS, policy=POLICY)
    assert summary["pairs"] == 2 and summary["changed"] == 0
    pairs = db_session.execute(select(VerifiedPair.text, VerifiedPair.intent, VerifiedPair.item_id)).all()
    assert sorted(pairs) == [("do you do mortgages", "oos", item.id), ("mortgage rates?", "oos", item.id)]
    again = reaggregate(db_session, method="majority", known_intents=INTENTS, policy=POLICY)
    assert again["pairs"] == 0 and db_session.scalar(select(func.count()).select_from(VerifiedPair)) == 2
