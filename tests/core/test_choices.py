"""A customer's click on a "did you mean" choice: recorded on the clarify turn it answers (SQLite and
PostgreSQL), counted by the overview, left out of the traffic shares as a question of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core.models import Turn
from core.registry import (
    SUGGESTION_ARM,
    choice_sets,
    clarify_choices,
    daily_traffic,
    get_or_create_conversation,
    log_turn,
    question_behind,
    record_choice,
    shown_suggestions,
)

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
SHOWN = ["card_arrival", "change_pin", "exchange_rate"]


def turn(
    session: Session,
    conversation_id: str | None,
    *,
    status: str,
    suggested: list[str] | None = None,
    served_by: str = "production",
    intent: str | None = None,
    created_at: datetime | None = None,
) -> Turn:
    conversation = get_or_create_conversation(session, conversation_id=conversation_id, channel="widget")
    logged = log_turn(
        session,
        conversation_id=conversation.id,
        user_text="my card?",
        status=status,
        intent=intent,
        answer="",
        confidence=0.5,
        candidates=[
            {"intent": "oos", "probability": 0.4},
            *({"intent": name, "probability": 0.2} for name in SHOWN),
        ],
        member_scores={},
        model_version="v1",
        latency_ms=1.0,
        served_by=served_by,
        suggested=suggested,
    )
    if created_at is not None:
        logged.created_at = created_at
        session.flush()
    return logged


def test_a_click_answers_the_clarify_turn_just_before_it(db_session: Session) -> None:
    asked = turn(db_session, None, status="clarify", suggested=SHOWN[:2])
    conversation_id = asked.conversation_id
    choice = record_choice(db_session, conversation_id=conversation_id, intent="change_pin", now=NOW)
    assert choice is not None and choice.turn is asked and (choice.rank, choice.shown) == (2, 2)
    db_session.expire_all()
    assert asked.chosen_intent == "change_pin" and asked.chosen_at is not None
    assert asked.chosen_at.replace(tzinfo=None) == NOW.replace(tzinfo=None)  # SQLite keeps no zone
    # a second click (the customer tries the other choice too) does not overwrite their first answer
    turn(db_session, conversation_id, status="answered", served_by=SUGGESTION_ARM, intent="change_pin")
    assert record_choice(db_session, conversation_id=conversation_id, intent="card_arrival") is None
    db_session.expire_all()
    assert asked.chosen_intent == "change_pin"


def test_a_thumbs_down_on_a_clicked_choice_is_about_the_question_that_offered_it(db_session: Session) -> None:
    asked = turn(db_session, None, status="clarify", suggested=SHOWN[:2])
    cid = asked.conversation_id
    record_choice(db_session, conversation_id=cid, intent="change_pin", now=NOW)
    clicked = turn(db_session, cid, status="answered", served_by=SUGGESTION_ARM, intent="change_pin")
    assert question_behind(db_session, turn_id=clicked.id) == asked.id
    assert question_behind(db_session, turn_id=asked.id) == asked.id  # a question the model read: itself
    # a follow-up chip of an answer, or a second chip after the first: no question behind it
    answered = turn(db_session, None, status="answered", suggested=["change_pin"], intent="card_arrival")
    follow = turn(db_session, answered.conversation_id, status="answered", served_by=SUGGESTION_ARM)
    second = turn(db_session, cid, status="answered", served_by=SUGGESTION_ARM, intent="card_arrival")
    assert question_behind(db_session, turn_id=follow.id) is None
    assert question_behind(db_session, turn_id=second.id) is None
    assert question_behind(db_session, turn_id=10**9) is None


def test_clicks_that_answer_no_question_record_nothing(db_session: Session) -> None:
    # an intent that was not among the choices shown
    asked = turn(db_session, None, status="clarify", suggested=SHOWN[:2])
    cid = asked.conversation_id
    assert record_choice(db_session, conversation_id=cid, intent="exchange_rate") is None
    # the follow-up chips of an answered turn are navigation, not an answer to "did you mean"
    answered = turn(db_session, None, status="answered", suggested=["change_pin"], intent="card_arrival")
    cid = answered.conversation_id
    assert record_choice(db_session, conversation_id=cid, intent="change_pin") is None
    # the customer typed another question after the clarify turn, then clicked an old chip
    old = turn(db_session, None, status="clarify", suggested=SHOWN[:2])
    cid = old.conversation_id
    turn(db_session, cid, status="handoff", suggested=[])
    assert record_choice(db_session, conversation_id=cid, intent="card_arrival") is None
    db_session.expire_all()
    assert asked.chosen_intent is None and old.chosen_intent is None
    # a new conversation: nothing to answer
    fresh = get_or_create_conversation(db_session, conversation_id=None, channel="widget")
    assert record_choice(db_session, conversation_id=fresh.id, intent="card_arrival") is None


def test_turns_logged_before_the_chips_were_stored_use_the_in_scope_top_candidates(
    db_session: Session,
) -> None:
    legacy = turn(db_session, None, status="clarify", suggested=None)
    assert shown_suggestions(legacy) == SHOWN  # "oos" is never offered
    choice = record_choice(
        db_session,
        conversation_id=legacy.conversation_id,
        intent="exchange_rate",
    )
    assert choice is not None and (choice.rank, choice.shown) == (3, 3)
    assert shown_suggestions(turn(db_session, None, status="handoff", suggested=None)) == []


def test_the_overview_counts_choices_and_leaves_clicks_out_of_the_shares(db_session: Session) -> None:
    today = NOW.replace(hour=10)
    for picked in [None, "card_arrival", "change_pin", "card_arrival"]:
        asked = turn(db_session, None, status="clarify", suggested=SHOWN[:2], created_at=today)
        if picked is not None:
            cid = asked.conversation_id
            assert record_choice(db_session, conversation_id=cid, intent=picked) is not None
            turn(
                db_session, cid, status="answered", served_by=SUGGESTION_ARM, intent=picked, created_at=today
            )
    turn(db_session, None, status="answered", intent="card_arrival", created_at=today)
    turn(db_session, None, status="handoff", created_at=today - timedelta(days=1))
    choices = clarify_choices(db_session, since=NOW - timedelta(days=30))
    assert (choices.asked, choices.picked, choices.by_rank) == (4, 3, {1: 2, 2: 1})
    assert choices.picked_share == 0.75
    assert clarify_choices(db_session, since=NOW + timedelta(days=1)).picked_share is None
    days = daily_traffic(db_session, days=2, now=NOW)
    # the three clicks' own turns are not counted as answered questions
    assert [(d.answered, d.clarify, d.picked, d.handoff) for d in days] == [(0, 0, 0, 1), (1, 4, 3, 0)]
    assert days[1].turns == 5
    assert days[1].answered_share == 0.2 and days[1].resolved_share == 0.8


def test_choice_sets_group_the_same_choices_in_any_order_most_asked_first(db_session: Session) -> None:
    plan = [  # (choices shown, what the customer clicked)
        (["card_arrival", "change_pin"], "card_arrival"),
        (["change_pin", "card_arrival"], "card_arrival"),  # the same set, shown in another order
        (["card_arrival", "change_pin"], "change_pin"),
        (["card_arrival", "change_pin"], None),
        (["exchange_rate", "change_pin", "card_arrival"], None),
    ]
    for shown, picked in plan:
        asked = turn(db_session, None, status="clarify", suggested=shown, created_at=NOW)
        if picked is not None:
            assert record_choice(db_session, conversation_id=asked.conversation_id, intent=picked) is not None
    turn(db_session, None, status="clarify", suggested=None, created_at=NOW)  # legacy: its top in-scope three
    turn(db_session, None, status="clarify", suggested=[], created_at=NOW)  # nothing shown: not a set
    sets, scanned = choice_sets(db_session, since=NOW - timedelta(days=1))
    assert scanned == 7
    assert [(c.shown, c.asked, c.picks, c.unpicked) for c in sets] == [
        (("card_arrival", "change_pin"), 4, {"card_arrival": 2, "change_pin": 1}, 1),
        (("card_arrival", "change_pin", "exchange_rate"), 2, {}, 2),
    ]
    top, scanned = choice_sets(db_session, since=NOW - timedelta(days=1), limit=1, scan=3)
    assert scanned == 3 and len(top) == 1  # only the latest three turns were read
