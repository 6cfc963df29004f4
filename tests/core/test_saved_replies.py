"""core.saved_replies: the team's own texts for the live chat."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core.registry import MESSAGE_LIMIT, NotFoundError
from core.saved_replies import TITLE_LIMIT, SavedReplyError, delete_reply, save_reply, saved_replies


def test_saved_replies_are_added_changed_listed_by_title_and_deleted(db_session: Session) -> None:
    hello = save_reply(db_session, title="  Hello   there ", text="Hi, I'm here to help.\n", actor="omar")
    assert (hello.title, hello.text, hello.created_by, hello.updated_by) == (
        "Hello there",  # spaces as one
        "Hi, I'm here to help.",
        "omar",
        "omar",
    )
    save_reply(db_session, title="anything else?", text="Is there anything else I can do?", actor="ana")
    assert [r.title for r in saved_replies(db_session)] == [
        "anything else?",
        "Hello there",
    ]  # whatever the case
    changed = save_reply(
        db_session, title="Hello", text="Hello! **Omar** here.", actor="ana", reply_id=hello.id
    )
    assert (changed.id, changed.title, changed.updated_by, changed.created_by) == (
        hello.id,
        "Hello",
        "ana",
        "omar",
    )
    # Card numbers never stored, as in any live-chat message.
    card = save_reply(db_session, title="card", text="Test card 4111 1111 1111 1111", actor="omar")
    assert "4111 1111 1111 1111" not in card.text
    assert delete_reply(db_session, reply_id=card.id).title == "card"
    assert [r.title for r in saved_replies(db_session)] == ["anything else?", "Hello"]
    with pytest.raises(NotFoundError):
        delete_reply(db_session, reply_id=card.id)
    with pytest.raises(NotFoundError):
        save_reply(db_session, title="x", text="y", actor="omar", reply_id=card.id)


@pytest.mark.parametrize(
    ("title", "text", "field", "message"),
    [
        ("  ", "text", "title", "give the reply a title"),
        ("t" * (TITLE_LIMIT + 1), "text", "title", f"the title is {TITLE_LIMIT + 1} characters"),
        ("Empty", " \n ", "text", "the reply is empty"),
        ("Long", "x" * (MESSAGE_LIMIT + 1), "text", f"the reply is {MESSAGE_LIMIT + 1} characters"),
        ("HELLO", "again", "title", "a saved reply is already called 'HELLO'"),
    ],
)
def test_a_bad_saved_reply_names_its_field_and_saves_nothing(
    db_session: Session, title: str, text: str, field: str, message: str
) -> None:
    save_reply(db_session, title="Hello", text="Hi.", actor="omar")
    with pytest.raises(SavedReplyError, match=message) as raised:
        save_reply(db_session, title=title, text=text, actor="omar")
    assert raised.value.field == field
    assert [r.title for r in saved_replies(db_session)] == ["Hello"]


def test_a_reply_keeps_its_own_title_when_changed(db_session: Session) -> None:
    hello = save_reply(db_session, title="Hello", text="Hi.", actor="omar")
    assert save_reply(db_session, title="HELLO", text="Hi!", actor="omar", reply_id=hello.id).title == "HELLO"
