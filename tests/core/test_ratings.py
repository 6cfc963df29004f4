"""Customers rate the live chat with the team (CSAT), on SQLite and PostgreSQL: who can be rated, what is
credited to whom, the summary the overview shows, and the comment's redaction after the retention period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from core.models import Conversation
from core.registry import (
    NothingToRate,
    RatingError,
    agent_reply,
    rate_chat,
    request_handoff,
    satisfaction,
)
from crowd_feedback.retention import redact_old_turns
from tests.conftest import add_turn

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def chat(session: Session, name: str, *agents: str) -> str:
    """A conversation handed to a person, where ``agents`` replied in this order."""
    add_turn(session, name, "I need a person")
    request_handoff(session, conversation_id=name)
    for agent in agents:
        agent_reply(session, conversation_id=name, agent=agent, text="Hello, I can help.")
    return name


def test_a_chat_is_rated_for_whoever_wrote_last_and_a_new_rating_replaces_it(db_session: Session) -> None:
    chat(db_session, "c1", "omar", "ines")
    rated = rate_chat(db_session, conversation_id="c1", rating=2, comment="  slow  ", now=NOW)
    assert (rated.rating, rated.rating_comment, rated.rated_agent) == (2, "slow", "ines")
    rate_chat(db_session, conversation_id="c1", rating=5, now=NOW)
    db_session.expire_all()
    stored = db_session.get(Conversation, "c1")
    assert stored is not None and (stored.rating, stored.rating_comment) == (5, None)


def test_only_a_chat_with_the_team_can_be_rated_on_a_scale_of_one_to_five(db_session: Session) -> None:
    add_turn(db_session, "bot-only", "where is my card")
    with pytest.raises(NothingToRate, match="nobody from the team"):
        rate_chat(db_session, conversation_id="bot-only", rating=5)
    chat(db_session, "c2", "omar")
    for bad in (0, 6, 4.5, True, "5", None):
        with pytest.raises(RatingError, match="from 1 to 5"):
            rate_chat(db_session, conversation_id="c2", rating=bad)  # type: ignore[arg-type]
    with pytest.raises(RatingError, match="longer than 500"):
        rate_chat(db_session, conversation_id="c2", rating=3, comment="x" * 501)
    assert db_session.get(Conversation, "c2").rating is None  # type: ignore[union-attr]


def test_satisfaction_per_person_and_overall(db_session: Session) -> None:
    plan = [("omar", 5), ("omar", 4), ("omar", 1), ("ines", 5), ("ines", 3)]
    for i, (agent, rating) in enumerate(plan):
        chat(db_session, f"s{i}", agent)
        rate_chat(db_session, conversation_id=f"s{i}", rating=rating, now=NOW - timedelta(days=i))
    chat(db_session, "old", "omar")
    rate_chat(db_session, conversation_id="old", rating=1, now=NOW - timedelta(days=40))
    summary = satisfaction(db_session, since=NOW - timedelta(days=30))
    assert summary.ratings == 5 and summary.by_rating == {5: 2, 4: 1, 3: 1, 1: 1}
    assert summary.csat == pytest.approx(3 / 5) and summary.mean == pytest.approx(18 / 5)
    assert [(p.agent, p.ratings, p.satisfied) for p in summary.people] == [("omar", 3, 2), ("ines", 2, 1)]
    assert summary.people[0].csat == pytest.approx(2 / 3) and summary.people[1].mean == pytest.approx(4.0)
    empty = satisfaction(db_session, since=NOW + timedelta(days=1))
    assert (empty.ratings, empty.csat, empty.mean, empty.people) == (0, None, None, [])


def test_rating_comments_are_redacted_after_the_retention_period(db_session: Session) -> None:
    chat(db_session, "old", "omar")
    chat(db_session, "new", "omar")
    for name, days_ago in (("old", 40), ("new", 1)):
        rate_chat(
            db_session,
            conversation_id=name,
            rating=1,
            comment="call me on +44 20 7946 0958",
            now=datetime.now(UTC) - timedelta(days=days_ago),
        )
    db_session.commit()
    summary = redact_old_turns(db_session, before=datetime.now(UTC) - timedelta(days=30))
    assert summary["rating_comments_redacted"] == 1
    db_session.expire_all()
    assert db_session.get(Conversation, "old").rating_comment == "call me on [PHONE]"  # type: ignore[union-attr]
    assert db_session.get(Conversation, "new").rating_comment == "call me on +44 20 7946 0958"  # type: ignore[union-attr]
    assert (
        redact_old_turns(db_session, before=datetime.now(UTC) - timedelta(days=30))[
            "rating_comments_redacted"
        ]
        == 0
    )
