"""core.registry.last_answer and asked_again: what a conversation last answered (for bot.repetition), and a
month's answers asked for again, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from core.models import utcnow
from core.registry import LastAnswer, asked_again, get_or_create_conversation, last_answer, log_turn


def said(
    session: Session,
    conversation_id: str,
    status: str,
    intent: str | None = None,
    *,
    times: int | None = None,
    served_by: str = "production",
    minutes_ago: float = 0.0,
) -> int:
    turn = log_turn(
        session, conversation_id=conversation_id, user_text="my card?", status=status, intent=intent,
        answer="", confidence=0.9, candidates=[], member_scores={}, model_version="v1", latency_ms=1.0,
        served_by=served_by, asked_again=times,
    )  # fmt: skip
    turn.created_at = utcnow() - timedelta(minutes=minutes_ago)
    session.flush()
    return turn.id


def conversation(session: Session) -> str:
    return get_or_create_conversation(session, conversation_id=None, channel="widget").id


def test_the_last_answer_passes_over_small_talk_and_ends_at_anything_else(db_session: Session) -> None:
    since = utcnow() - timedelta(minutes=30)
    talk = conversation(db_session)
    assert last_answer(db_session, conversation_id=talk, since=since) is None  # nothing yet
    answered = said(db_session, talk, "answered", "card_arrival", minutes_ago=5)
    said(db_session, talk, "small_talk", minutes_ago=4)  # "thanks", or a typed "that's wrong"
    assert last_answer(db_session, conversation_id=talk, since=since) == LastAnswer(
        answered, "card_arrival", 1
    )
    again = said(db_session, talk, "answered", "card_arrival", times=2, minutes_ago=3)
    assert last_answer(db_session, conversation_id=talk, since=since) == LastAnswer(again, "card_arrival", 2)
    for status in ("clarify", "handoff", "off_topic", "asked_for_person"):
        other = conversation(db_session)
        said(db_session, other, "answered", "card_arrival", minutes_ago=2)
        said(db_session, other, status, minutes_ago=1)
        assert last_answer(db_session, conversation_id=other, since=since) is None, status
    chip = conversation(db_session)  # a clicked chip's answer is an answer
    clicked = said(db_session, chip, "answered", "change_pin", served_by="suggestion")
    assert last_answer(db_session, conversation_id=chip, since=since) == LastAnswer(clicked, "change_pin", 1)
    old = conversation(db_session)  # answered before the window: nothing to give again
    said(db_session, old, "answered", "card_arrival", minutes_ago=45)
    assert last_answer(db_session, conversation_id=old, since=since) is None


def test_a_month_of_answers_asked_for_again(db_session: Session) -> None:
    talk = conversation(db_session)
    said(db_session, talk, "answered", "card_arrival", minutes_ago=10)
    said(db_session, talk, "answered", "card_arrival", times=2, minutes_ago=9)
    said(db_session, talk, "handoff", times=3, minutes_ago=8)
    said(db_session, talk, "answered", "change_pin", times=2, minutes_ago=60 * 24 * 40)  # before the month
    counted = asked_again(db_session, since=utcnow() - timedelta(days=30))
    assert (counted.answered, counted.handed_over) == (1, 1)
    everything = asked_again(db_session, since=utcnow() - timedelta(days=60))
    assert (everything.answered, everything.handed_over) == (2, 1)
