"""The question a follow-up is read with (core.registry.earlier_question), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.models import utcnow
from core.registry import (
    SUGGESTION_ARM,
    EarlierQuestion,
    earlier_question,
    get_or_create_conversation,
    log_turn,
    record_choice,
)

HOUR_AGO = timedelta(hours=1)


def say(
    session: Session,
    conversation: str,
    text: str,
    *,
    status: str = "answered",
    intent: str | None = "card_arrival",
    suggested: list[str] | None = None,
    served_by: str = "production",
    context_text: str | None = None,
    rated_turn_id: int | None = None,
    minutes_ago: float = 0,
) -> Any:
    get_or_create_conversation(session, conversation_id=conversation, channel="widget")
    turn = log_turn(
        session,
        conversation_id=conversation,
        user_text=text,
        status=status,
        intent=intent if status == "answered" else None,
        answer="",
        confidence=0.9,
        candidates=[],
        member_scores={},
        model_version="v1",
        latency_ms=1.0,
        served_by=served_by,
        suggested=suggested,
        context_text=context_text,
        rated_turn_id=rated_turn_id,
    )
    turn.created_at = utcnow() - timedelta(minutes=minutes_ago)
    session.flush()
    return turn


def earlier(session: Session, conversation: str, within: timedelta = HOUR_AGO) -> EarlierQuestion | None:
    return earlier_question(session, conversation_id=conversation, since=utcnow() - within)


def test_the_last_question_with_its_answer_and_its_own_context(db_session: Session) -> None:
    assert earlier(db_session, "none-yet") is None
    say(db_session, "c1", "where is my card")
    assert earlier(db_session, "c1") == EarlierQuestion("where is my card", None, "card_arrival")
    # a "did you mean" or a handoff gave no answer: nothing to leave out
    say(db_session, "c1", "card pin", status="clarify", suggested=["change_pin", "pin_blocked"])
    assert earlier(db_session, "c1") == EarlierQuestion("card pin", None, None)
    # a follow-up read with its own earlier question passes that on
    say(
        db_session, "c1", "how long does that take?", intent="card_delivery_estimate", context_text="card pin"
    )
    assert earlier(db_session, "c1") == EarlierQuestion(
        "how long does that take?", "card pin", "card_delivery_estimate"
    )


def test_small_talk_and_requests_for_a_person_are_passed_over(db_session: Session) -> None:
    say(db_session, "c2", "where is my card")
    say(db_session, "c2", "thanks!", status="small_talk")
    say(db_session, "c2", "can I talk to a human", status="asked_for_person")
    assert earlier(db_session, "c2") == EarlierQuestion("where is my card", None, "card_arrival")


def test_only_a_question_within_the_window(db_session: Session) -> None:
    say(db_session, "c3", "where is my card", minutes_ago=45)
    assert earlier(db_session, "c3", within=timedelta(minutes=30)) is None
    assert earlier(db_session, "c3", within=timedelta(minutes=60)) is not None


def test_a_clicked_did_you_mean_answers_the_question_that_offered_it(db_session: Session) -> None:
    say(db_session, "c4", "card pin", status="clarify", suggested=["change_pin", "pin_blocked"])
    assert record_choice(db_session, conversation_id="c4", intent="pin_blocked") is not None
    say(db_session, "c4", "/pin_blocked", intent="pin_blocked", served_by=SUGGESTION_ARM)
    assert earlier(db_session, "c4") == EarlierQuestion("card pin", None, "pin_blocked")


def test_a_choice_after_thats_wrong_answers_the_rated_question(db_session: Session) -> None:
    wrong = say(db_session, "c5", "my card got stuck", intent="card_arrival")
    say(
        db_session,
        "c5",
        "that's wrong",
        status="small_talk",
        suggested=["card_swallowed", "lost_or_stolen_card"],
        rated_turn_id=wrong.id,
    )
    assert record_choice(db_session, conversation_id="c5", intent="card_swallowed") is not None
    say(db_session, "c5", "/card_swallowed", intent="card_swallowed", served_by=SUGGESTION_ARM)
    assert earlier(db_session, "c5") == EarlierQuestion("my card got stuck", None, "card_swallowed")


def test_a_follow_up_chip_is_no_question_to_read_after(db_session: Session) -> None:
    """An answer's follow-up chip ("Change my PIN" under the card answer) was clicked: the customer asked
    nothing, and the question before it is about something else."""
    say(db_session, "c6", "where is my card", suggested=["change_pin"])
    say(db_session, "c6", "/change_pin", intent="change_pin", served_by=SUGGESTION_ARM)
    assert earlier(db_session, "c6") is None
