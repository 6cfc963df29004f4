"""Answer quality from the bot's own traffic: audited precision (only randomly audited turns count),
thumbs-down and reviewers' verdicts on the answer text, per intent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from core.models import Turn, utcnow
from core.registry import get_or_create_conversation, log_turn
from crowd_feedback.quality import answer_quality, wilson_interval
from crowd_feedback.review import ReviewPolicy, next_item, route_turn, submit_judgement
from tests.crowd_feedback.test_review import INTENTS, reviewers, vector

POLICY = ReviewPolicy(gold_rate=0.0, judgements=3)


def answered(
    session: Session, text: str, intent: str, *, helpful: bool | None = None, status: str = "answered"
) -> Turn:
    """A turn the bot answered with ``intent`` (or, with another ``status``, whose top candidate it was)."""
    conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
    turn = log_turn(
        session,
        conversation_id=conversation.id,
        user_text=text,
        status=status,
        intent=intent if status == "answered" else None,
        answer=f"The answer for {intent}." if status == "answered" else "Let me get a person.",
        confidence=0.95 if status == "answered" else 0.3,
        candidates=[{"intent": intent, "probability": 0.95}],
        member_scores={},
        model_version="v1",
        latency_ms=1.0,
    )
    turn.helpful = helpful
    return turn


def review(
    session: Session, people: list, turn: Turn, reason: str, label: str, answer_ok: bool | None
) -> None:
    item = route_turn(session, turn=turn, reasons=[reason], embedding=vector(turn.id * 7), policy=POLICY)
    assert item is not None
    for reviewer in people:
        if item.status != "pending":
            break
        assert next_item(session, reviewer=reviewer, policy=POLICY) is item
        submit_judgement(
            session,
            item_id=item.id,
            reviewer=reviewer,
            label=label,
            answer_ok=answer_ok,
            known_intents=INTENTS,
            policy=POLICY,
        )
        session.refresh(item)


def test_audited_precision_thumbs_down_and_answer_verdicts_per_intent(db_session: Session) -> None:
    people = reviewers(db_session, 3)
    for i in range(6):
        answered(db_session, f"where is my card {i}", "card_arrival", helpful=[True, False, None][i % 3])
    for i in range(3):
        answered(db_session, f"pin {i}", "change_pin")
    # Audited: three card_arrival answers confirmed, one was really change_pin; one change_pin confirmed.
    for i, label in enumerate(["card_arrival", "card_arrival", "card_arrival", "change_pin"]):
        review(
            db_session, people, answered(db_session, f"audit card {i}", "card_arrival"), "audit", label, True
        )
    review(db_session, people, answered(db_session, "audit pin", "change_pin"), "audit", "change_pin", False)
    # Not an unbiased sample: a thumbs-down answer found wrong does not count toward precision.
    review(
        db_session,
        people,
        answered(db_session, "bad pin", "change_pin"),
        "thumbs_down",
        "exchange_rate",
        False,
    )
    # A handoff: reviewers rating the handoff message say nothing about change_pin's answer text.
    handoff = answered(db_session, "pin thing??", "change_pin", status="handoff")
    review(db_session, people, handoff, "handoff", "change_pin", False)
    # An audit still waiting for reviewers.
    pending = answered(db_session, "audit waiting", "card_arrival")
    assert route_turn(db_session, turn=pending, reasons=["audit"], embedding=vector(999), policy=POLICY)
    old = answered(db_session, "long ago", "exchange_rate", helpful=False)
    old.created_at = utcnow() - timedelta(days=60)
    db_session.flush()

    report = answer_quality(db_session, since=utcnow() - timedelta(days=30))
    assert (report.audited, report.audited_correct, report.audits_pending) == (5, 4, 1)
    assert report.precision == pytest.approx(0.8)
    low, high = report.interval
    assert low == pytest.approx(0.376, abs=1e-3) and high == pytest.approx(0.964, abs=1e-3)
    card, pin = report.intents["card_arrival"], report.intents["change_pin"]
    assert (card.answered, card.rated, card.unhelpful) == (11, 4, 2) and card.unhelpful_rate == 0.5
    assert (card.audited, card.audited_correct, card.precision) == (4, 3, 0.75)
    assert (pin.answered, pin.audited, pin.audited_correct) == (5, 1, 1)
    # Two reviewers resolve each item: card 4 items x 2 "acceptable"; pin 2 items x 2 "not acceptable".
    assert (card.answer_votes, card.acceptable_rate) == (8, 1.0)
    assert (pin.answer_votes, pin.acceptable_rate) == (4, 0.0)
    assert "exchange_rate" not in report.intents  # its only turn is older than the window
    assert answer_quality(db_session).intents["exchange_rate"].unhelpful == 1


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(95, 100)
    assert low == pytest.approx(0.888, abs=1e-3) and high == pytest.approx(0.978, abs=1e-3)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.722, abs=1e-3)


def test_labels_reviewers_mix_up_on_settled_questions(db_session: Session) -> None:
    from core.models import Judgement, ReviewItem
    from crowd_feedback.quality import LabelMixup, label_mixups

    people = reviewers(db_session, 5)
    now = utcnow()

    def item(labels: list[str], **fields: object) -> ReviewItem:
        row = ReviewItem(text="q", reasons=["clarify"], **fields)
        db_session.add(row)
        db_session.flush()
        for person, label in zip(people, labels, strict=False):
            db_session.add(Judgement(item_id=row.id, reviewer_id=person.id, label=label, created_at=now))
        return row

    resolved = {"status": "resolved", "resolved_label": "card_arrival"}
    item(["card_arrival", "card_arrival", "card_delivery_estimate"], **resolved)
    item(["card_delivery_estimate", "card_arrival", "card_arrival", "card_arrival"], **resolved)
    item(["change_pin", "card_arrival", "card_arrival"], **resolved)  # once only: below min_times
    item(["exchange_rate", "exchange_rate", "exchange_rate"], status="pending")  # not settled: left out
    item(["change_pin", "card_arrival", "card_arrival"], status="escalated")  # not settled either
    # A check question's key settles it, whatever its status; a retired key is no longer trusted.
    item(["exchange_rate", "exchange_rate", "change_pin"], is_gold=True, gold_label="change_pin")
    item(["exchange_rate", "exchange_rate"], is_gold=True, gold_label="change_pin", status="retired")
    old = item(["not_a_question", "not_a_question"], status="resolved", resolved_label="lost_card")
    db_session.flush()

    recent = [
        LabelMixup("change_pin", "exchange_rate", 2, 3),
        LabelMixup("card_arrival", "card_delivery_estimate", 2, 10),
    ]
    # As often as each other: the larger share of the settled label's answers first.
    assert label_mixups(db_session) == [LabelMixup("lost_card", "not_a_question", 2, 2), *recent]
    assert [round(m.share, 3) for m in label_mixups(db_session)] == [1.0, 0.667, 0.2]
    assert label_mixups(db_session, min_times=1)[3] == LabelMixup("card_arrival", "change_pin", 1, 10)
    assert label_mixups(db_session, limit=1) == [LabelMixup("lost_card", "not_a_question", 2, 2)]
    # Only answers given since a moment count.
    for judgement in old.judgements:
        judgement.created_at = now - timedelta(days=40)
    db_session.flush()
    assert label_mixups(db_session, since=now - timedelta(days=1)) == recent
    assert label_mixups(db_session, since=now + timedelta(seconds=1)) == []


def test_answers_kept_out_by_a_pages_metadata_are_counted_with_their_pages(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crowd_feedback.quality import kept_out_answers

    conversation = get_or_create_conversation(db_session, conversation_id=None, channel="widget")

    def asked(page: list[tuple[str, str]], kept_from: str | None, *, days_ago: int = 0) -> None:
        turn = log_turn(
            db_session,
            conversation_id=conversation.id,
            user_text="where is my card",
            status="handoff" if kept_from else "answered",
            intent=None if kept_from else "card_arrival",
            answer="",
            confidence=0.0,
            candidates=[],
            member_scores={},
            model_version="v1",
            latency_ms=1.0,
            metadata_filter={
                "metadata": [{"key": k, "value": v} for k, v in page],
                "logical_operation": "AND",
            },
            kept_from=kept_from,
        )
        turn.created_at = utcnow() - timedelta(days=days_ago)

    for _ in range(3):
        asked([("product", "fx")], "card_arrival")
    asked([("product", "loans"), ("region", "uk")], "card_arrival")
    asked([("product", "fx")], "change_pin")
    asked([("product", "fx")], "change_pin", days_ago=40)  # before the window
    asked([("product", "cards")], None)  # answered as asked: nothing kept out
    db_session.flush()
    kept = kept_out_answers(db_session, since=utcnow() - timedelta(days=30))
    assert [(k.intent, k.count, k.pages) for k in kept] == [
        ("card_arrival", 4, [("product: fx", 3), ("product: loans and region: uk", 1)]),
        ("change_pin", 1, [("product: fx", 1)]),
    ]
    assert [k.count for k in kept_out_answers(db_session)] == [4, 2]
    # The pages come from an intent's newest turns only (the count stays exact).
    monkeypatch.setattr("crowd_feedback.quality.KEPT_OUT_PAGES_READ", 2)
    newest = kept_out_answers(db_session, since=utcnow() - timedelta(days=30))[0]
    assert (newest.count, newest.pages) == (4, [("product: fx", 1), ("product: loans and region: uk", 1)])
