"""The team's notes on a conversation (core.registry.add_note): in the transcript for the team, never the
customer's, and no reply (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import ConversationMessage
from core.registry import (
    NOTE,
    MessageError,
    add_note,
    agent_reply,
    customer_message,
    last_live_senders,
    messages_after,
    request_handoff,
)
from tests.core.test_presence import conversation


def test_the_teams_notes_are_never_the_customers_nor_a_reply(db_session: Session) -> None:
    chat = conversation(db_session)
    early = add_note(db_session, conversation_id=chat, author="ana", text="  Called her: card re-sent. ")
    assert (early.sender, early.agent, early.text) == (NOTE, "ana", "Called her: card re-sent.")
    request_handoff(db_session, conversation_id=chat)
    reply = agent_reply(db_session, conversation_id=chat, agent="ana", text="Hi!", seen=0)
    customer_message(db_session, conversation_id=chat, text="thanks, when will it come?")
    add_note(db_session, conversation_id=chat, author="bo", text="card 4111 1111 1111 1111 ordered")
    # the customer's side (the widget's poll) never has them; the team's pages do, in order
    assert [m.sender for m in messages_after(db_session, conversation_id=chat)] == ["agent", "customer"]
    assert [m.sender for m in messages_after(db_session, conversation_id=chat, notes=True)] == [
        NOTE,
        "agent",
        "customer",
        NOTE,
    ]
    stored = messages_after(db_session, conversation_id=chat, after=reply.id, notes=True)[-1].text
    assert stored == "card [CARD_NUMBER] ordered"  # never a card number, as in the messages
    # a note is no message: the customer still wrote last (an answer is due), and a note crosses no reply
    assert last_live_senders(db_session, [chat]) == {chat: "customer"}
    newest = db_session.scalar(
        select(func.max(ConversationMessage.id)).where(ConversationMessage.sender != NOTE)
    )
    assert agent_reply(db_session, conversation_id=chat, agent="ana", text="Tomorrow.", seen=newest)
    with pytest.raises(MessageError):
        add_note(db_session, conversation_id=chat, author="ana", text="   ")
