"""How fast the team answers the conversations handed to it (core.registry.team_response), on SQLite and
PostgreSQL: when a handoff starts, which reply is the first, what counts as handled, and the split by the
team's hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from core.models import Conversation, ConversationMessage
from core.registry import agent_reply, leave_contact, request_handoff, team_response
from core.team_hours import TeamHours
from tests.conftest import add_turn

SINCE = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # within Mon-Fri 09:00-17:00 (UTC)
SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # outside


def asked(session: Session, name: str, at: datetime) -> Conversation:
    """A conversation whose customer asked for a person at ``at``."""
    add_turn(session, name, "can I talk to a person?", status="asked_for_person", created_at=at)
    conversation = request_handoff(session, conversation_id=name)
    conversation.handoff_requested_at = at
    session.flush()
    return conversation


def reply(session: Session, name: str, at: datetime) -> None:
    message: ConversationMessage = agent_reply(session, conversation_id=name, agent="omar", text="Hello")
    message.created_at = at
    session.flush()


def test_the_first_reply_and_the_handling_are_timed_from_the_handoff(db_session: Session) -> None:
    # asked, answered after 2 min (and again later), handled after an hour
    first = asked(db_session, "c1", TUESDAY_10)
    reply(db_session, "c1", TUESDAY_10 + timedelta(minutes=2))
    reply(db_session, "c1", TUESDAY_10 + timedelta(minutes=10))
    first.handoff_closed_at = TUESDAY_10 + timedelta(hours=1)
    # the bot handed off on Saturday; a person replied 30 s later
    add_turn(db_session, "c2", "qwerty", status="handoff", created_at=SATURDAY_10)
    reply(db_session, "c2", SATURDAY_10 + timedelta(seconds=30))
    # the bot handed off, the customer pressed the button a minute later: the wait began with the bot's
    # handoff; nobody replied, a contact was left
    add_turn(db_session, "c3", "zxcv", status="handoff", created_at=SATURDAY_10)
    asked(db_session, "c3", SATURDAY_10 + timedelta(minutes=1))
    leave_contact(db_session, conversation_id="c3", contact="jo@example.com")
    # a reply to an earlier handoff is no reply to the newest request; the one after it is (5 min)
    asked(db_session, "c5", TUESDAY_10 - timedelta(hours=2))
    reply(db_session, "c5", TUESDAY_10 - timedelta(hours=1))
    db_session.get(Conversation, "c5").handoff_closed_at = TUESDAY_10 - timedelta(minutes=30)  # type: ignore[union-attr]
    reopened = asked(db_session, "c5", TUESDAY_10)
    assert reopened.handoff_closed_at is None  # the new request reopened it
    reply(db_session, "c5", TUESDAY_10 + timedelta(minutes=5))
    # before the period: not counted
    asked(db_session, "old", SINCE - timedelta(days=3))
    reply(db_session, "old", SINCE - timedelta(days=3) + timedelta(minutes=1))
    # a conversation the bot answered is no handoff
    add_turn(db_session, "fine", "where is my card", created_at=TUESDAY_10)
    db_session.flush()

    figures = team_response(db_session, since=SINCE)
    times = figures.all
    assert (times.handed, times.replied, times.handled, times.contact_only) == (4, 3, 1, 1)
    assert times.first_reply == (30.0, 120.0, 300.0)
    assert (times.median_first_reply, times.p90_first_reply) == (120.0, 300.0)
    assert times.to_handled == (3600.0,) and times.median_to_handled == 3600.0
    assert times.reply_share == pytest.approx(3 / 4)
    assert figures.within_hours is None and figures.outside_hours is None

    hours = TeamHours.parse("Mon-Fri 09:00-17:00", "UTC")
    split = team_response(db_session, since=SINCE, hours=hours)
    assert split.all == times
    assert split.within_hours is not None and split.outside_hours is not None
    assert (split.within_hours.handed, split.within_hours.first_reply) == (2, (120.0, 300.0))
    assert (split.outside_hours.handed, split.outside_hours.first_reply) == (2, (30.0,))
    assert split.outside_hours.contact_only == 1


def test_no_handoff_gives_empty_figures(db_session: Session) -> None:
    add_turn(db_session, "fine", "where is my card", created_at=TUESDAY_10)
    times = team_response(db_session, since=SINCE).all
    assert (times.handed, times.replied, times.reply_share, times.median_first_reply) == (0, 0, None, None)
