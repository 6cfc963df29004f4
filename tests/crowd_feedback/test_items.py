"""Finding review items (words, routing reason, the bot's intent) and settling many at once, all or none
(both databases)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import ReviewItem, VerifiedPair
from crowd_feedback.review import (
    MAX_BULK_SETTLE,
    ReviewError,
    add_gold_item,
    find_items,
    operator_resolve_many,
    route_turn,
)
from crowd_feedback.reviewers import create_user
from tests.crowd_feedback.test_review import INTENTS, POLICY, make_turn, vector


def routed(session: Session, text: str, reasons: list[str], *, top: str, seed: int) -> ReviewItem:
    return route_turn(
        session,
        turn=make_turn(session, text, top=top),
        reasons=reasons,
        embedding=vector(seed),
        policy=POLICY,
    )


def test_find_items_by_words_reason_and_the_bots_intent(db_session: Session) -> None:
    spam = routed(db_session, "WIN a 100% FREE iPhone", ["handoff"], top="exchange_rate", seed=1)
    card = routed(db_session, "my card is late", ["clarify", "audit"], top="card_arrival", seed=2)
    pin = routed(db_session, "pin_reset please", ["thumbs_down"], top="change_pin", seed=3)
    add_gold_item(db_session, text="my card is late again", label="card_arrival", policy=POLICY)
    every, total = find_items(db_session, status="pending")
    assert total == 3 and {i.id for i in every} == {spam.id, card.id, pin.id}  # never gold
    assert [i.id for i in find_items(db_session, status="pending", text="  CARD  is ")[0]] == [card.id]
    assert [i.id for i in find_items(db_session, status="pending", text="100%")[0]] == [spam.id]
    assert find_items(db_session, status="pending", text="100% card")[1] == 0  # % and _ are literal
    assert [i.id for i in find_items(db_session, status="pending", text="pin_")[0]] == [pin.id]
    assert find_items(db_session, status="pending", text="pinXreset")[1] == 0
    assert [i.id for i in find_items(db_session, status="pending", reason="audit")[0]] == [card.id]
    assert [i.id for i in find_items(db_session, status="pending", reason="thumbs_down")[0]] == [pin.id]
    assert [i.id for i in find_items(db_session, status="pending", bot_intent="exchange_rate")[0]] == [
        spam.id
    ]
    assert find_items(db_session, status="pending", reason="clarify", bot_intent="change_pin")[1] == 0
    page, total = find_items(db_session, status="pending", limit=2, offset=2)
    assert total == 3 and len(page) == 1
    assert find_items(db_session, status="resolved") == ([], 0)
    with pytest.raises(ReviewError, match="status must be one of"):
        find_items(db_session, status="done")
    with pytest.raises(ReviewError, match="reason must be one of"):
        find_items(db_session, status="pending", reason="gold")


def test_settling_many_items_is_all_or_none(db_session: Session) -> None:
    omar = create_user(db_session, username="omar", password="correct horse battery", role="operator")
    rita = create_user(db_session, username="rita", password="correct horse battery", role="reviewer")
    items = [
        routed(db_session, f"spam number {i}", ["handoff"], top="exchange_rate", seed=10 + i)
        for i in range(3)
    ]
    ids = [i.id for i in items]
    pairs = lambda: db_session.scalar(select(func.count()).select_from(VerifiedPair))  # noqa: E731
    for bad, message in (
        ([*ids, 999_999], "item 999999: no such review item"),
        ([], "tick at least one item"),
        (list(range(1, MAX_BULK_SETTLE + 2)), f"at most {MAX_BULK_SETTLE} items at once"),
    ):
        savepoint = db_session.begin_nested()
        with pytest.raises(ReviewError, match=message):
            operator_resolve_many(
                db_session,
                item_ids=bad,
                label="not_a_question",
                known_intents=INTENTS,
                operator=omar,
                policy=POLICY,
            )
        savepoint.rollback()
        assert all(db_session.get(ReviewItem, i).status == "pending" for i in ids) and pairs() == 0
    with pytest.raises(ReviewError, match="unknown intent 'nope'"):
        operator_resolve_many(
            db_session, item_ids=ids, label="nope", known_intents=INTENTS, operator=omar, policy=POLICY
        )
    with pytest.raises(ReviewError, match="only operators"):
        operator_resolve_many(
            db_session,
            item_ids=ids,
            label="exchange_rate",
            known_intents=INTENTS,
            operator=rita,
            policy=POLICY,
        )
    settled = operator_resolve_many(
        db_session,
        item_ids=[*ids, ids[0]],
        label="exchange_rate",
        known_intents=INTENTS,
        operator=omar,
        policy=POLICY,
    )
    assert [i.id for i in settled] == ids  # a repeated id counts once
    for item in settled:
        assert (item.status, item.resolved_label, item.resolved_confidence, item.settled_by) == (
            "resolved",
            "exchange_rate",
            1.0,
            "omar",
        )
    assert pairs() == 3


def test_judgement_counts_in_one_query(db_session: Session) -> None:
    from crowd_feedback.review import judgement_counts
    from tests.crowd_feedback.test_review import judge, reviewers

    first = routed(db_session, "one", ["handoff"], top="card_arrival", seed=30)
    second = routed(db_session, "two", ["handoff"], top="change_pin", seed=31)
    people = reviewers(db_session, 2)
    for person in people:
        judge(db_session, first, person, "card_arrival", POLICY)
    assert judgement_counts(db_session, item_ids=[first.id, second.id]) == {first.id: 2}
    assert judgement_counts(db_session, item_ids=[]) == {}
