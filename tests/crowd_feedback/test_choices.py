"""The customers' "did you mean" choices in review (SQLite and PostgreSQL): one more voter per item, trusted
as far as picks agreed with what people settled, never shown to reviewers, and one more worker in bulk EM."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn, utcnow
from core.registry import (
    ClarifyChoices,
    Correction,
    clarify_choices,
    complaint_choices,
    corrections,
    get_or_create_conversation,
    log_turn,
    record_choice,
)
from crowd_feedback.review import (
    CUSTOMERS,
    CUSTOMERS_AFTER_COMPLAINT,
    PICK_TRUST_EARNED_AFTER,
    CustomerPick,
    PickTrust,
    ReviewPolicy,
    customer_picks,
    item_posterior,
    pick_log_likelihood,
    pick_trust,
    reaggregate,
    route_turn,
)
from tests.crowd_feedback.test_review import INTENTS, judge, reviewers, vector
from tests.query_plans import plans, sqlite_only

SHOWN = ["change_pin", "card_arrival", "exchange_rate"]
POLICY = ReviewPolicy(gold_rate=0.0, judgements=3, model_voter=False)  # the customers alone, no shortlist


def clarify_turn(session: Session, text: str, *, picked: str | None, shown: list[str] = SHOWN) -> Turn:
    """A clarify turn that offered ``shown``; ``picked``: the choice the customer clicked next."""
    conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
    turn = log_turn(
        session,
        conversation_id=conversation.id,
        user_text=text,
        status="clarify",
        intent=None,
        answer="",
        confidence=0.4,
        candidates=[{"intent": name, "probability": 0.3, "title": name} for name in shown],
        member_scores={},
        model_version="v1",
        latency_ms=1.0,
        suggested=shown,
    )
    if picked is not None:
        assert record_choice(session, conversation_id=conversation.id, intent=picked) is not None
    return turn


def settled_history(session: Session, people: list[object], *, right: int, wrong: int, lone: int) -> None:
    """Past items people settled (two judgements on the label) whose customer picked it (``right``) or another
    choice (``wrong``); ``lone``: items settled by one person, which check nothing."""
    for i in range(right + wrong + lone):
        label = "card_arrival"
        picked = label if i < right or i >= right + wrong else "change_pin"
        turn = clarify_turn(session, f"past {i}", picked=picked)
        past = ReviewItem(text=f"past {i}", status="resolved", resolved_label=label, resolved_confidence=0.95)
        session.add(past)
        session.flush()
        session.add(ReviewItemTurn(item_id=past.id, turn_id=turn.id, reason="clarify"))
        for reviewer in people[: 1 if i >= right + wrong else 2]:
            session.add(Judgement(item_id=past.id, reviewer_id=reviewer.id, label=label))  # type: ignore[attr-defined]
    session.flush()


def test_the_customers_choice_is_the_one_most_of_them_clicked(db_session: Session) -> None:
    first = clarify_turn(db_session, "where is my card", picked="card_arrival")
    item = route_turn(db_session, turn=first, reasons=["clarify"], embedding=vector(1), policy=POLICY)
    assert item is not None
    for i, picked in enumerate(["change_pin", "change_pin", None]):
        other = clarify_turn(db_session, f"where is my card {i}", picked=picked, shown=SHOWN[:2])
        db_session.add(ReviewItemTurn(item_id=item.id, turn_id=other.id, reason="clarify"))
    lonely = route_turn(
        db_session,
        turn=clarify_turn(db_session, "pin?", picked=None),
        reasons=["clarify"],
        embedding=vector(2),
        policy=POLICY,
    )
    db_session.flush()
    picks = customer_picks(db_session, item_ids=[item.id, lonely.id])  # type: ignore[union-attr]
    assert picks == {item.id: CustomerPick("change_pin", tuple(SHOWN[:2]), 3)}


def answered_then_wrong(session: Session, text: str, *, picked: str | None, shown: list[str] = SHOWN) -> Turn:
    """An answered turn, then the customer's "that's wrong" that offered ``shown`` (the intents ranked next)
    and, with ``picked``, the chip they clicked. Returns the answered turn (the one review holds)."""
    conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
    common: dict[str, Any] = {
        "conversation_id": conversation.id,
        "member_scores": {},
        "model_version": "v1",
        "latency_ms": 1.0,
    }
    answered = log_turn(
        session,
        user_text=text,
        status="answered",
        intent="top_up",
        answer="Top up with a card.",
        confidence=0.9,
        candidates=[{"intent": name, "probability": 0.1} for name in ["top_up", *shown]],
        suggested=["top_up_limits"],  # its own follow-ups: never a choice about the question
        **common,
    )
    assert record_choice(session, conversation_id=conversation.id, intent="top_up_limits") is None
    log_turn(
        session,
        user_text="that's wrong",
        status="small_talk",
        intent=None,
        answer="Sorry. Did you mean one of these?",
        confidence=0.0,
        candidates=[],
        suggested=shown,
        rated_turn_id=answered.id,
        **common,
    )
    assert record_choice(session, conversation_id=conversation.id, intent="not_offered") is None
    if picked is not None:
        choice = record_choice(session, conversation_id=conversation.id, intent=picked)
        assert choice is not None and choice.after_complaint and choice.rank == shown.index(picked) + 1
        assert record_choice(session, conversation_id=conversation.id, intent=picked) is None  # once
    return answered


def test_the_choice_after_that_is_wrong_is_the_customers_pick_for_the_rated_question(
    db_session: Session,
) -> None:
    """The chip clicked after "that's wrong" counts for the item of the answer it rated, as a "did you mean"
    pick does for its own turn; together with clarify picks it is one customer voice per member turn."""
    rated = answered_then_wrong(db_session, "top up failed?", picked="card_arrival")
    item = route_turn(db_session, turn=rated, reasons=["thumbs_down"], embedding=vector(90), policy=POLICY)
    assert item is not None
    clarified = clarify_turn(db_session, "top up failed??", picked="card_arrival")
    db_session.add(ReviewItemTurn(item_id=item.id, turn_id=clarified.id, reason="clarify"))
    unpicked = answered_then_wrong(db_session, "my top up", picked=None)
    lonely = route_turn(
        db_session, turn=unpicked, reasons=["thumbs_down"], embedding=vector(91), policy=POLICY
    )
    assert lonely is not None
    db_session.flush()
    picks = customer_picks(db_session, item_ids=[item.id, lonely.id])
    assert picks == {item.id: CustomerPick("card_arrival", tuple(SHOWN), 2, after_complaint=True)}
    # The overview counts them apart: offered twice after "that's wrong", the second choice clicked once.
    since = utcnow() - timedelta(days=1)
    assert complaint_choices(db_session, since=since) == ClarifyChoices(asked=2, picked=1, by_rank={2: 1})
    assert clarify_choices(db_session, since=since) == ClarifyChoices(asked=1, picked=1, by_rank={2: 1})
    assert corrections(db_session, since=since) == [Correction("top_up", "card_arrival", 1)]
    # People settle the item on the customers' choice: the complaint's pick is checked like any pick.
    people = reviewers(db_session, 2)
    item.status, item.resolved_label, item.resolved_confidence = "resolved", "card_arrival", 0.95
    for reviewer in people:
        db_session.add(Judgement(item_id=item.id, reviewer_id=reviewer.id, label="card_arrival"))
    db_session.flush()
    # Each kind is checked apart: the item holds one pick of each.
    for after_complaint in (False, True):
        trust = pick_trust(db_session, after_complaint=after_complaint)
        assert (trust.checked, trust.agreed) == (1, 1) and trust.chance == pytest.approx(1 / 3)
    assert customer_picks(db_session, item_ids=[item.id], after_complaint=True) == {
        item.id: CustomerPick("card_arrival", tuple(SHOWN), 1, after_complaint=True)
    }
    assert customer_picks(db_session, item_ids=[item.id], after_complaint=False) == {
        item.id: CustomerPick("card_arrival", tuple(SHOWN), 1)
    }


def test_a_member_that_is_itself_a_that_is_wrong_turn_brings_no_did_you_mean_pick(
    db_session: Session,
) -> None:
    """A "did you mean" pick is the one on the member turn itself; a member that rated another answer holds
    the customer's pick about that answer, which is not this item's (the query joins members by key alone
    and leaves those out itself, a batch of items at a time)."""
    rated = answered_then_wrong(db_session, "top up failed?", picked="card_arrival")
    complaint = db_session.scalars(select(Turn).where(Turn.rated_turn_id == rated.id)).one()
    assert complaint.chosen_intent == "card_arrival"
    clarified = clarify_turn(db_session, "which card?", picked="change_pin")
    item = route_turn(db_session, turn=clarified, reasons=["clarify"], embedding=vector(92), policy=POLICY)
    assert item is not None
    db_session.add(ReviewItemTurn(item_id=item.id, turn_id=complaint.id, reason="clarify"))
    db_session.flush()
    many = [item.id, *range(10_000, 10_600)]  # more ids than one query's batch
    assert customer_picks(db_session, item_ids=many, after_complaint=False) == {
        item.id: CustomerPick("change_pin", tuple(SHOWN), 1)
    }


def test_picks_for_a_batch_of_items_look_members_up_by_key_on_sqlite(db_session: Session) -> None:
    """SQLite's planner read every turn that rated nothing (the whole log, through the rated_turn_id index)
    when "rated_turn_id IS NULL" was part of the join: 2 s for a batch on 600,000 turns. The plan of each
    query customer_picks runs must find the turns by their key or through the rated answer's index."""
    sqlite_only(db_session)

    def batches(session: Session) -> None:
        for after_complaint in (False, True, None):
            customer_picks(session, item_ids=list(range(1, 501)), after_complaint=after_complaint)

    found = plans(db_session, batches, containing="chosen_intent IS NOT NULL ORDER BY turns.id")
    assert len(found) == 3
    for plan in found:
        assert "SEARCH review_item_turns" in plan.split(" | ")[0], plan  # the members first
        assert "SCAN turns" not in plan and "(rated_turn_id=?)" not in plan.split(" | ")[0], plan


def complaint_history(session: Session, people: list[Any], *, right: int, wrong: int) -> None:
    """Past items people settled (two judgements on ``card_arrival``) whose customer said "that's wrong" to
    the answer and then clicked the label (``right``) or another choice (``wrong``)."""
    for i in range(right + wrong):
        rated = answered_then_wrong(
            session, f"past wrong {i}", picked="card_arrival" if i < right else "change_pin"
        )
        past = ReviewItem(
            text=f"past wrong {i}", status="resolved", resolved_label="card_arrival", resolved_confidence=0.95
        )
        session.add(past)
        session.flush()
        session.add(ReviewItemTurn(item_id=past.id, turn_id=rated.id, reason="thumbs_down"))
        for reviewer in people:
            session.add(Judgement(item_id=past.id, reviewer_id=reviewer.id, label="card_arrival"))
    session.flush()


@pytest.mark.parametrize("earned_by", ["did_you_mean", "after_complaint"])
def test_each_kind_of_pick_earns_its_own_trust(db_session: Session, earned_by: str) -> None:
    """Picks after "did you mean" that earned trust do not lend it to picks after "that's wrong", nor the
    other way round: two split reviewers are settled only by a pick of the kind with the record."""
    people = reviewers(db_session, 2)
    if earned_by == "did_you_mean":
        settled_history(db_session, people, right=171, wrong=9, lone=0)
    else:
        complaint_history(db_session, people, right=171, wrong=9)
    clarify_trust = pick_trust(db_session)
    complaint_trust = pick_trust(db_session, after_complaint=True)
    earned, unearned = (
        (clarify_trust, complaint_trust) if earned_by == "did_you_mean" else (complaint_trust, clarify_trust)
    )
    assert (earned.checked, earned.agreed) == (180, 171) and earned.lift == pytest.approx(
        (171 - 60) / (180 - 60)
    )
    assert unearned.checked == 0 and unearned.weight == 0.0
    items = {}
    for kind in ("did_you_mean", "after_complaint"):
        if kind == "did_you_mean":
            turn = clarify_turn(db_session, "split clarify", picked="change_pin")
        else:
            turn = answered_then_wrong(db_session, "split wrong", picked="change_pin")
        item = route_turn(
            db_session, turn=turn, reasons=["clarify"], embedding=vector(len(items) + 45), policy=POLICY
        )
        assert item is not None
        for reviewer, label in zip(people, ["change_pin", "card_arrival"], strict=True):
            judge(db_session, item, reviewer, label, POLICY)
        db_session.refresh(item)
        items[kind] = item
    other = "after_complaint" if earned_by == "did_you_mean" else "did_you_mean"
    settled, split = items[earned_by], items[other]
    assert settled.status == "resolved" and settled.resolved_label == "change_pin"
    assert split.status == "pending" and split.required_judgements == 3
    posterior = item_posterior(db_session, item=split, known_intents=INTENTS, policy=POLICY)
    assert posterior["change_pin"] == pytest.approx(posterior["card_arrival"])


def test_bulk_reaggregation_hears_the_two_kinds_of_pick_as_two_voters(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EM measures the picks after "that's wrong" as a worker of their own, not mixed with "did you mean"."""
    import crowd_feedback.aggregation as aggregation

    people = reviewers(db_session, 2)
    clarified = clarify_turn(db_session, "bulk clarify", picked="change_pin")
    rated = answered_then_wrong(db_session, "bulk wrong", picked="exchange_rate")
    items = []
    for i, turn in enumerate((clarified, rated)):
        item = route_turn(
            db_session, turn=turn, reasons=["clarify"], embedding=vector(700 + i), policy=POLICY
        )
        assert item is not None
        for reviewer in people:
            db_session.add(Judgement(item_id=item.id, reviewer_id=reviewer.id, label="card_arrival"))
        items.append(str(item.id))
    db_session.flush()
    heard: list[Any] = []
    real = aggregation.get_strategy

    def spy(name: str, **options: Any) -> Any:
        strategy = real(name, **options)
        aggregate = strategy.aggregate

        def listening(answers: Any, **kwargs: Any) -> Any:
            heard.extend(answers)
            return aggregate(answers, **kwargs)

        strategy.aggregate = listening  # type: ignore[method-assign]
        return strategy

    monkeypatch.setattr(aggregation, "get_strategy", spy)
    reaggregate(db_session, method="one_coin", known_intents=INTENTS, policy=POLICY)
    voters = {(a.item, a.worker, a.label) for a in heard if a.worker.startswith("~")}
    assert voters == {
        (items[0], CUSTOMERS, "change_pin"),
        (items[1], CUSTOMERS_AFTER_COMPLAINT, "exchange_rate"),
    }


def test_picks_are_read_in_batches(db_session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    import crowd_feedback.review as review

    monkeypatch.setattr(review, "PICK_BATCH", 2)
    items = []
    for i, picked in enumerate(["change_pin", None, "card_arrival", "exchange_rate", None]):
        turn = clarify_turn(db_session, f"question {i}", picked=picked)
        item = route_turn(db_session, turn=turn, reasons=["clarify"], embedding=vector(70 + i), policy=POLICY)
        assert item is not None
        items.append(item.id)
    picks = customer_picks(db_session, item_ids=items)
    assert {items.index(k): p.intent for k, p in picks.items()} == {
        0: "change_pin",
        2: "card_arrival",
        3: "exchange_rate",
    }


def test_a_pick_is_moderate_evidence_among_the_choices_shown() -> None:
    labels = [*INTENTS, "new_intent"]
    pick = CustomerPick("change_pin", ("change_pin", "card_arrival", "exchange_rate"), 1)
    log_l = dict(zip(labels, pick_log_likelihood(pick, labels, 0.8), strict=True))
    assert log_l["change_pin"] == pytest.approx(-0.1431, abs=1e-4)  # log (1/3 + 0.8 * 2/3)
    assert log_l["card_arrival"] == pytest.approx(-2.7081, abs=1e-4)  # log (0.2 / 3): another choice shown
    assert log_l["new_intent"] == pytest.approx(-1.0986, abs=1e-4)  # log 1/3: the answer was not offered
    # clicks no better than random are no evidence either way, whatever the number of choices
    for shown in (pick.shown, pick.shown[:2]):
        flat = pick_log_likelihood(CustomerPick("change_pin", shown, 1), labels, 0.0)
        assert flat.max() == pytest.approx(flat.min())


def test_pick_trust_is_corrected_for_chance() -> None:
    # 60 picks among two choices, 60 among three, all at chance: half and a third right
    random_clicks = PickTrust(checked=120, agreed=30 + 20, chance=60 * 0.5 + 60 / 3)
    assert random_clicks.accuracy == pytest.approx(50 / 120) and random_clicks.lift == 0.0
    assert PickTrust(checked=120, agreed=120, chance=50).lift == 0.98  # held below certainty
    assert PickTrust(checked=120, agreed=85, chance=50).lift == pytest.approx(0.5)
    assert PickTrust(checked=0, agreed=0).lift is None and PickTrust(checked=0, agreed=0).weight == 0.0


@pytest.mark.parametrize("history", ["earned", "wrong", "none"])
def test_two_split_reviewers_are_settled_by_a_pick_that_earned_trust(
    db_session: Session, history: str
) -> None:
    people = reviewers(db_session, 2)
    if history != "none":
        right, wrong = (171, 9) if history == "earned" else (0, 180)
        settled_history(db_session, people, right=right, wrong=wrong, lone=10)
    trust = pick_trust(db_session)
    assert trust.checked == (0 if history == "none" else 180)  # the lone ten check nothing
    if history == "earned":
        assert trust.accuracy == pytest.approx(0.95) and trust.chance == pytest.approx(60)
        assert trust.lift == pytest.approx((171 - 60) / (180 - 60))
        assert trust.weight == pytest.approx(180 / (180 + PICK_TRUST_EARNED_AFTER))
    turn = clarify_turn(db_session, "split decision", picked="change_pin")
    item = route_turn(db_session, turn=turn, reasons=["clarify"], embedding=vector(40), policy=POLICY)
    assert item is not None
    for reviewer, label in zip(people, ["change_pin", "card_arrival"], strict=True):
        judge(db_session, item, reviewer, label, POLICY)
    db_session.refresh(item)
    if history == "earned":
        # reviewers tie 1:1; the pick (0.95 accurate among three, weight 0.9) tips it past 0.9
        assert item.status == "resolved" and item.resolved_label == "change_pin"
        assert 0.9 <= item.resolved_confidence < 0.95
    else:  # picks that were always wrong (at or below chance), or never checked, decide nothing
        assert item.status == "pending" and item.required_judgements == 3
        posterior = item_posterior(db_session, item=item, known_intents=INTENTS, policy=POLICY)
        assert posterior["change_pin"] == pytest.approx(posterior["card_arrival"])


def test_bulk_reaggregation_counts_the_customers_as_one_more_worker(db_session: Session) -> None:
    people = reviewers(db_session, 2)
    items, turns = [], []
    for i in range(12):
        truth = SHOWN[i % 3]
        turns.append(clarify_turn(db_session, f"split {i}", picked=None))
        item = route_turn(
            db_session, turn=turns[-1], reasons=["clarify"], embedding=vector(600 + i), policy=POLICY
        )
        assert item is not None
        # the reviewers split on the first three items; on the other nine they agree with the customer
        second = SHOWN[(i + 1) % 3] if i < 3 else truth
        db_session.add(Judgement(item_id=item.id, reviewer_id=people[0].id, label=truth))
        db_session.add(Judgement(item_id=item.id, reviewer_id=people[1].id, label=second))
        items.append((item, truth))
    db_session.flush()
    people_only = reaggregate(db_session, method="one_coin", known_intents=INTENTS, policy=POLICY)
    assert people_only["resolved"] == 9 and all(item.status == "pending" for item, _ in items[:3])
    for turn, (_, truth) in zip(turns, items, strict=True):  # now the customers' clicks arrive
        assert record_choice(db_session, conversation_id=turn.conversation_id, intent=truth) is not None
    summary = reaggregate(db_session, method="one_coin", known_intents=INTENTS, policy=POLICY)
    assert summary["items"] == 12 and summary["resolved"] == 3 and summary["changed"] == 0
    for item, truth in items:
        db_session.refresh(item)
        assert item.status == "resolved" and item.resolved_label == truth
    assert CUSTOMERS.startswith(
        "~"
    )  # no account name can take the customers' place (usernames: [A-Za-z0-9_.-])
