"""The month's figures and the handoff inbox read the turns' figures index alone on SQLite (migration 0033):
the overview's, the Knowledge page's and the inbox's counts must not read every turn's row, nor walk the
turns of other periods."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from core.models import utcnow
from core.registry import (
    asked_again,
    clarify_choices,
    conversation_summaries,
    daily_traffic,
    other_languages,
    waiting_conversations,
)
from crowd_feedback.quality import answer_quality
from tests.core.test_choices import turn
from tests.query_plans import plans, sqlite_only


def test_the_month_s_counts_come_from_the_figures_index_alone(db_session: Session) -> None:
    sqlite_only(db_session)
    now = utcnow()
    drawn_and_not = (("answered", "card_arrival"), ("clarify", None), ("handoff", None), ("small_talk", None))
    for status, intent in drawn_and_not:
        turn(db_session, None, status=status, intent=intent, created_at=now - timedelta(days=1))
    db_session.flush()
    since = now - timedelta(days=30)
    covering = "USING COVERING INDEX ix_turns_status_created (status=? AND created_at>?)"

    chart = plans(db_session, lambda s: daily_traffic(s, days=30, now=now), containing="GROUP BY")
    assert len(chart) == 1 and covering in chart[0], chart  # each status's period, not the whole log
    per_intent = plans(
        db_session, lambda s: answer_quality(s, since=since), containing="turns.helpful IS NOT"
    )
    assert len(per_intent) == 1 and covering in per_intent[0], per_intent
    asked = plans(db_session, lambda s: clarify_choices(s, since=since), containing="count(*)")
    assert len(asked) == 1 and covering in asked[0], asked
    # the few answered "none of these" from their own partial index, not the month's clarify turns
    declined = plans(db_session, lambda s: clarify_choices(s, since=since), containing="declined_at >=")
    assert len(declined) == 1 and "USING INDEX ix_turns_declined_at (declined_at>?)" in declined[0], declined
    # the few declined messages in another language, by time from their own partial index
    languages = plans(
        db_session, lambda s: other_languages(s, since=since), containing="GROUP BY turns.language"
    )
    assert len(languages) == 1 and "USING INDEX ix_turns_language_created (created_at>?)" in languages[0], (
        languages
    )
    # the few answers asked for again, overall and by intent, from their own partial index by time
    again = plans(db_session, lambda s: asked_again(s, since=since), containing="turns.asked_again IS NOT")
    partial = "USING INDEX ix_turns_asked_again_created (created_at>?)"
    assert len(again) == 1 and partial in again[0], again
    again_by_intent = plans(
        db_session, lambda s: answer_quality(s, since=since), containing="asked_again IS NOT NULL"
    )
    assert len(again_by_intent) == 1 and partial in again_by_intent[0], again_by_intent
    # and the conversations where customers asked again (the list's view), from the same index
    again_listed = plans(
        db_session,
        lambda s: conversation_summaries(s, asked_again_only=True),
        containing="turns.asked_again IS NOT NULL",
    )
    chosen = [p for p in again_listed if "conversations" in p.split(" | ")[0]]  # the count and the page
    assert len(chosen) == 2, again_listed
    assert all("SCAN turns USING INDEX ix_turns_asked_again_created" in p for p in chosen), chosen
    inbox = plans(db_session, lambda s: waiting_conversations(s), containing="count(*)")
    assert len(inbox) == 1 and "COVERING INDEX ix_turns_status_created (status=?)" in inbox[0], inbox
    # And the figures are still right.
    days = daily_traffic(db_session, days=30, now=now)
    assert sum(d.answered for d in days) == 1 and sum(d.clarify for d in days) == 1
    assert sum(d.handoff for d in days) == 1 and sum(d.turns for d in days) == 3  # no small talk
    assert answer_quality(db_session, since=since).intents["card_arrival"].answered == 1
    assert waiting_conversations(db_session)[1] == 1  # the handed-off conversation


def test_the_months_handoffs_come_from_their_own_indexes(db_session: Session) -> None:
    """How fast the team answered (core.registry.team_response): the conversations a person was asked for
    from their partial index by time, the bot's handoffs from the figures index, the replies by
    conversation; no query reads every conversation or turn."""
    from core.registry import team_response

    sqlite_only(db_session)
    now = utcnow()
    turn(db_session, None, status="handoff", intent=None, created_at=now - timedelta(days=1))
    db_session.flush()
    since = now - timedelta(days=30)
    asked = plans(db_session, lambda s: team_response(s, since=since), containing="handoff_requested_at >=")
    partial = "USING INDEX ix_conversations_handoff_requested (handoff_requested_at>?)"
    assert len(asked) == 1 and partial in asked[0], asked
    bot = plans(db_session, lambda s: team_response(s, since=since), containing="min(turns.created_at)")
    assert len(bot) == 1 and "USING COVERING INDEX ix_turns_status_created" in bot[0], bot
    replies = plans(db_session, lambda s: team_response(s, since=since), containing="conversation_messages")
    assert len(replies) == 1 and "USING INDEX ix_conversation_messages_conversation_id" in replies[0], replies
