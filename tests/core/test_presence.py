"""core.presence: who from the team has a conversation open, and who is typing a reply in it (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import presence
from core.models import Conversation, ConversationMessage, ConversationViewer, User, utcnow
from core.registry import RepliesCrossed, agent_reply, request_handoff
from crowd_feedback.retention import erase_conversation

NOW = utcnow()


def people(session: Session, *names: str) -> list[int]:
    users = [User(username=name, password_hash="x", role="operator") for name in names]
    session.add_all(users)
    session.flush()
    return [user.id for user in users]


def conversation(session: Session) -> str:
    found = Conversation()
    session.add(found)
    session.flush()
    return found.id


def rows(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ConversationViewer)) or 0)


def test_a_page_open_is_written_seldom_and_seen_by_the_others_only(db_session: Session) -> None:
    ana, bo = people(db_session, "ana", "bo")
    chat = conversation(db_session)
    assert presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=NOW) is True
    # polls every 3 s write nothing until the row is WRITE_EVERY old
    soon = NOW + timedelta(seconds=3)
    assert presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=soon) is False
    later = NOW + presence.WRITE_EVERY + timedelta(seconds=1)
    assert presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=later) is True
    assert rows(db_session) == 1
    # ana does not need telling she is there; bo is told, while her page polls
    assert presence.colleagues(db_session, conversation_id=chat, user_id=ana, now=later) == []
    assert presence.colleagues(db_session, conversation_id=chat, user_id=bo, now=later) == [
        presence.Colleague("ana", typing=False)
    ]
    gone = later + presence.VIEWING + timedelta(seconds=1)  # her page stopped polling
    assert presence.colleagues(db_session, conversation_id=chat, user_id=bo, now=gone) == []


def test_typing_is_written_at_once_and_fades(db_session: Session) -> None:
    ana, bo = people(db_session, "ana", "bo")
    chat = conversation(db_session)
    presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=NOW)
    soon = NOW + timedelta(seconds=3)
    # the row is fresh, but starting to type is news: written now, not at the next WRITE_EVERY
    assert presence.note_viewer(db_session, conversation_id=chat, user_id=ana, typing=True, now=soon) is True
    assert (
        presence.note_viewer(
            db_session, conversation_id=chat, user_id=ana, typing=True, now=soon + timedelta(seconds=3)
        )
        is False
    )  # still typing, noted 3 s ago
    assert presence.colleagues(db_session, conversation_id=chat, user_id=bo, now=soon) == [
        presence.Colleague("ana", typing=True)
    ]
    assert presence.someone_typing(db_session, conversation_id=chat, now=soon) is True
    quiet = soon + presence.TYPING + timedelta(seconds=1)  # she stopped typing, the page is still open
    presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=quiet)
    assert presence.someone_typing(db_session, conversation_id=chat, now=quiet) is False
    assert presence.colleagues(db_session, conversation_id=chat, user_id=bo, now=quiet) == [
        presence.Colleague("ana", typing=False)
    ]
    # sending the reply ends the typing at once
    presence.note_viewer(db_session, conversation_id=chat, user_id=ana, typing=True, now=quiet)
    presence.stop_typing(db_session, conversation_id=chat, user_id=ana)
    assert presence.colleagues(db_session, conversation_id=chat, user_id=bo, now=quiet) == [
        presence.Colleague("ana", typing=False)
    ]


def test_leaving_and_the_inbox_view_of_several_conversations(db_session: Session) -> None:
    ana, bo, cy, dee = people(db_session, "ana", "bo", "cy", "dee")
    first, second, third = conversation(db_session), conversation(db_session), conversation(db_session)
    presence.note_viewer(db_session, conversation_id=first, user_id=bo, typing=True, now=NOW)
    presence.note_viewer(db_session, conversation_id=first, user_id=ana, now=NOW)
    presence.note_viewer(db_session, conversation_id=first, user_id=cy, now=NOW)
    presence.note_viewer(db_session, conversation_id=second, user_id=dee, now=NOW)
    presence.note_viewer(db_session, conversation_id=second, user_id=ana, now=NOW)
    db_session.get(User, cy).active = False  # a deactivated account is nobody
    db_session.flush()
    found = presence.viewers(db_session, [first, second, third], except_user=dee, now=NOW)
    assert found == {
        first: [presence.Colleague("ana", False), presence.Colleague("bo", True)],
        second: [presence.Colleague("ana", False)],
    }
    assert presence.describe(found[first]) == "bo is typing a reply. ana also has this conversation open."
    assert presence.describe(found[first], brief=True) == "bo is typing a reply; open by ana"
    assert presence.describe([presence.Colleague("ana", False), presence.Colleague("eve", False)]) == (
        "ana and eve have this conversation open."
    )
    assert presence.describe([], brief=True) == presence.describe([]) == ""
    assert presence.leave(db_session, conversation_id=first, user_id=ana) is True
    assert presence.leave(db_session, conversation_id=first, user_id=ana) is False  # already gone
    assert presence.colleagues(db_session, conversation_id=first, user_id=dee, now=NOW) == [
        presence.Colleague("bo", True)
    ]
    assert presence.viewers(db_session, [], now=NOW) == {}


def test_stale_rows_are_purged_and_erasure_takes_the_conversations(db_session: Session) -> None:
    ana, bo = people(db_session, "ana", "bo")
    old, chat = conversation(db_session), conversation(db_session)
    presence.note_viewer(db_session, conversation_id=old, user_id=ana, now=NOW - timedelta(days=2))
    presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=NOW - timedelta(hours=40))
    assert rows(db_session) == 2  # within a day of each other: nothing purged
    presence.note_viewer(db_session, conversation_id=chat, user_id=bo, now=NOW)  # a new row purges
    assert [(row.conversation_id, row.user_id) for row in db_session.scalars(select(ConversationViewer))] == [
        (chat, bo)
    ]
    presence.note_viewer(db_session, conversation_id=chat, user_id=ana, now=NOW)
    erase_conversation(db_session, conversation_id=chat, actor="omar")
    assert rows(db_session) == 0


def test_a_reply_after_a_colleagues_unseen_one_is_refused(db_session: Session) -> None:
    chat = conversation(db_session)
    request_handoff(db_session, conversation_id=chat)
    first = agent_reply(db_session, conversation_id=chat, agent="ana", text="Hi, Ana here.", seen=0)
    # her own earlier reply never stops her
    agent_reply(db_session, conversation_id=chat, agent="ana", text="Let me look.", seen=0)
    db_session.add(ConversationMessage(conversation_id=chat, sender="customer", text="my card is lost"))
    db_session.flush()
    # bo's page showed nothing yet: ana's replies are news to him, and his is not sent
    with pytest.raises(RepliesCrossed) as crossed:
        agent_reply(db_session, conversation_id=chat, agent="bo", text="Hi, Bo here.", seen=0)
    assert crossed.value.agents == ["ana"] and str(crossed.value) == "ana wrote to the customer meanwhile"
    assert db_session.scalar(select(func.count()).select_from(ConversationMessage)) == 3
    newest = db_session.scalar(select(func.max(ConversationMessage.id)))
    # having seen hers (the customer's message since is no reason to stop), it goes
    assert agent_reply(db_session, conversation_id=chat, agent="bo", text="Hi, Bo here.", seen=newest)
    with pytest.raises(RepliesCrossed) as crossed:
        agent_reply(db_session, conversation_id=chat, agent="cy", text="Hello.", seen=first.id)
    assert crossed.value.agents == ["ana", "bo"] and str(crossed.value).startswith("ana and bo wrote")
    # without ``seen`` (the admin API, a page from before this release) nothing is checked
    agent_reply(db_session, conversation_id=chat, agent="cy", text="Hello.")
