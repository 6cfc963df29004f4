"""The review-concurrency benchmark: its bookkeeping finds what must never happen, and a small run on the
PostgreSQL server finds none of it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.models import Judgement, ReviewItemTurn, VerifiedPair
from crowd_feedback.reviewers import create_user
from tests.conftest import POSTGRES_URL, _postgres_reason, load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("review_concurrency.py")


def test_the_books_count_duplicate_pairs_over_judged_items_and_lost_members(
    bench: Any, db_session: Session
) -> None:
    from crowd_feedback.review import route_turn

    item = route_turn(
        db_session,
        turn=bench.customer_turn(db_session, "question 1"),
        reasons=["handoff"],
        embedding=bench.question_vector(1),
        policy=bench.POLICY,
    )
    clean = bench.books(db_session)
    assert (clean["duplicate_pairs"], clean["over_judged_items"], clean["wrong_cluster_sizes"]) == (0, 0, 0)
    assert clean["items"] == 1 and clean["statuses"] == {"pending": 1}
    item.cluster_size = 2  # a second member counted but never linked
    item.required_judgements = 1
    people = [
        create_user(db_session, username=f"books{i}", password="correct horse battery", role="reviewer")
        for i in range(2)
    ]
    for person in people:  # two judgements where one was asked for
        db_session.add(Judgement(item_id=item.id, reviewer_id=person.id, label="card_arrival"))
    for _ in range(2):  # the same pair twice: the item resolved twice
        db_session.add(VerifiedPair(item_id=item.id, text="question 1", intent="card_arrival", weight=1.0))
    db_session.flush()
    found = bench.books(db_session)
    assert (found["duplicate_pairs"], found["over_judged_items"], found["wrong_cluster_sizes"]) == (1, 1, 1)
    assert db_session.query(ReviewItemTurn).count() == 1


def test_reviewers_and_routers_at_once_keep_the_books_straight_on_postgresql(bench: Any) -> None:
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    result = bench.run(POSTGRES_URL, reviewers=6, items=8, routers=2, routed=12, change_share=0.3)
    assert result["errors"] == 0, result["first_errors"]
    assert (result["duplicate_pairs"], result["over_judged_items"], result["wrong_cluster_sizes"]) == (
        0,
        0,
        0,
    )
    assert result["answers"] >= 8 * 3 and result["routed"] == 12 and result["items"] >= 8
    assert result["taken_back"] > 0
