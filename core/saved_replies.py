"""Saved replies: the team's own texts for the live chat (a greeting, "anything else?", the way to reach the
card team...), beside the knowledge base's answers in the reply box's list. Domain functions, session
first."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import SavedReply, utcnow
from core.redaction import scrub_secrets
from core.registry import MESSAGE_LIMIT, NotFoundError

TITLE_LIMIT = 100


class SavedReplyError(ValueError):
    """A saved reply with no title or text, a text longer than a live-chat message, or a title taken."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def saved_replies(session: Session) -> list[SavedReply]:
    """Every saved reply, by title."""
    return list(session.scalars(select(SavedReply).order_by(func.lower(SavedReply.title), SavedReply.id)))


def save_reply(
    session: Session, *, title: str, text: str, actor: str, reply_id: int | None = None
) -> SavedReply:
    """Add a saved reply, or change one (``reply_id``). Titles are unique whatever their case, so the list
    in the reply box never shows two alike."""
    title, text = " ".join(title.split()), text.strip()
    if not title:
        raise SavedReplyError("title", "give the reply a title: it is what the list in the reply box shows")
    if len(title) > TITLE_LIMIT:
        raise SavedReplyError("title", f"the title is {len(title)} characters; the limit is {TITLE_LIMIT}")
    if not text:
        raise SavedReplyError("text", "the reply is empty")
    if len(text) > MESSAGE_LIMIT:
        raise SavedReplyError(
            "text", f"the reply is {len(text)} characters; a message may have {MESSAGE_LIMIT}"
        )
    taken = session.scalar(
        select(SavedReply.id).where(
            func.lower(SavedReply.title) == title.lower(), SavedReply.id != (reply_id or 0)
        )
    )
    if taken is not None:
        raise SavedReplyError("title", f"a saved reply is already called {title!r}")
    if reply_id is None:
        reply = SavedReply(title=title, text="", created_by=actor[:100], created_at=utcnow())
        session.add(reply)
    else:
        found = session.get(SavedReply, reply_id)
        if found is None:
            raise NotFoundError(f"no saved reply {reply_id}")
        reply = found
    reply.title, reply.text = title, scrub_secrets(text)
    reply.updated_by, reply.updated_at = actor[:100], utcnow()
    session.flush()
    return reply


def delete_reply(session: Session, *, reply_id: int) -> SavedReply:
    reply = session.get(SavedReply, reply_id)
    if reply is None:
        raise NotFoundError(f"no saved reply {reply_id}")
    session.delete(reply)
    session.flush()
    return reply
