"""Who from the team is on a conversation now: the people with its page open and whether they are typing a
reply (Zendesk calls it agent collision). Two people answering one customer see each other before they both
write, and the inbox shows which waiting conversations someone has open. Domain functions, session first.

The conversation page polls every few seconds while the conversation waits for a person, and each poll
reports its reader (``note_viewer``). Writes are spaced out: a row is written when it is new, older than
``WRITE_EVERY``, or when its reader starts typing, so an open page mostly reads (on SQLite even an UPDATE
that changes nothing takes the write lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models import ConversationViewer, User, as_utc, utcnow

WRITE_EVERY = timedelta(seconds=10)  # a page open on a conversation is written at most this often
VIEWING = timedelta(
    seconds=25
)  # seen within this: the page is open (it polls every 3 s, 10 s after an error)
TYPING = timedelta(seconds=8)  # typed within this (the page reports keystrokes of the last 6 s): typing
TYPING_EVERY = timedelta(seconds=4)  # a typist's row is written at most this often
PURGE_AFTER = timedelta(days=1)  # rows older than this are deleted when a new one is written


@dataclass(frozen=True)
class Colleague:
    name: str
    typing: bool

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "typing": self.typing}


def note_viewer(
    session: Session,
    *,
    conversation_id: str,
    user_id: int,
    typing: bool = False,
    now: datetime | None = None,
) -> bool:
    """Note that ``user_id`` has the conversation's page open now (and is typing a reply, with ``typing``).
    True when a row was written; most polls write nothing."""
    now = now or utcnow()
    row = session.execute(
        select(ConversationViewer.seen_at, ConversationViewer.typing_at).where(
            ConversationViewer.conversation_id == conversation_id, ConversationViewer.user_id == user_id
        )
    ).first()
    if row is not None:
        fresh = as_utc(row.seen_at) > now - WRITE_EVERY
        typing_noted = row.typing_at is not None and as_utc(row.typing_at) > now - TYPING_EVERY
        if fresh and (not typing or typing_noted):
            return False
    else:  # a new row: clear the ones nobody has refreshed for a day (the index on seen_at finds them)
        session.execute(delete(ConversationViewer).where(ConversationViewer.seen_at < now - PURGE_AFTER))
    values: dict[str, object] = {"seen_at": now}
    if typing:
        values["typing_at"] = now
    # An upsert: two tabs of one person may report their first poll at the same moment.
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(ConversationViewer).values(conversation_id=conversation_id, user_id=user_id, **values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ConversationViewer.conversation_id, ConversationViewer.user_id], set_=values
        )
    )
    return True


def stop_typing(session: Session, *, conversation_id: str, user_id: int) -> None:
    """The reader sent their reply: they are no longer typing one (others stop being told at once)."""
    session.execute(
        update(ConversationViewer)
        .where(
            ConversationViewer.conversation_id == conversation_id,
            ConversationViewer.user_id == user_id,
            ConversationViewer.typing_at.is_not(None),
        )
        .values(typing_at=None),
        execution_options={"synchronize_session": False},
    )


def leave(session: Session, *, conversation_id: str, user_id: int) -> bool:
    """The reader closed the page (or went elsewhere): others stop seeing them there at once, not only once
    the row has aged out. True when there was a row."""
    result = session.execute(
        delete(ConversationViewer).where(
            ConversationViewer.conversation_id == conversation_id, ConversationViewer.user_id == user_id
        ),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0))


def viewers(
    session: Session,
    conversation_ids: Sequence[str],
    *,
    except_user: int | None = None,
    now: datetime | None = None,
) -> dict[str, list[Colleague]]:
    """Who has each of the conversations open now (active accounts only, by name; ``except_user`` left out,
    the reader does not need telling they are there). Conversations nobody has open are left out."""
    if not conversation_ids:
        return {}
    now = now or utcnow()
    query = (
        select(ConversationViewer.conversation_id, User.username, ConversationViewer.typing_at)
        .join(User, User.id == ConversationViewer.user_id)
        .where(
            ConversationViewer.conversation_id.in_(list(conversation_ids)),
            ConversationViewer.seen_at > now - VIEWING,
            User.active.is_(True),
        )
        .order_by(ConversationViewer.conversation_id, User.username)
    )
    if except_user is not None:
        query = query.where(ConversationViewer.user_id != except_user)
    found: dict[str, list[Colleague]] = {}
    for conversation_id, name, typing_at in session.execute(query):
        typing = typing_at is not None and as_utc(typing_at) > now - TYPING
        found.setdefault(conversation_id, []).append(Colleague(name, typing))
    return found


def colleagues(
    session: Session, *, conversation_id: str, user_id: int, now: datetime | None = None
) -> list[Colleague]:
    """The others from the team with this conversation open now, and whether each is typing a reply."""
    return viewers(session, [conversation_id], except_user=user_id, now=now).get(conversation_id, [])


def someone_typing(session: Session, *, conversation_id: str, now: datetime | None = None) -> bool:
    """Whether anyone from the team is typing a reply to the conversation now: what the customer's chat shows
    as "Support team is typing" (never who)."""
    return any(
        person.typing for person in viewers(session, [conversation_id], now=now).get(conversation_id, [])
    )


def describe(people: Sequence[Colleague], *, brief: bool = False) -> str:
    """What the conversation page says of them, the typists first: "bo is typing a reply. ana also has this
    conversation open."; ``brief``, the inbox's row: "bo is typing a reply; open by ana". Empty when nobody
    else is there."""
    typing = [person.name for person in people if person.typing]
    open_only = [person.name for person in people if not person.typing]
    said = []
    if typing:
        said.append(f"{listed(typing)} {'is' if len(typing) == 1 else 'are'} typing a reply")
    if open_only and brief:
        said.append(f"open by {listed(open_only)}")
    elif open_only:
        also = " also" if typing else ""
        said.append(
            f"{listed(open_only)}{also} {'has' if len(open_only) == 1 else 'have'} this conversation open"
        )
    return "; ".join(said) if brief else "".join(f"{part}. " for part in said).rstrip()


def listed(names: Sequence[str]) -> str:
    """ "ana", "ana and bo", "ana, bo and cy"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
