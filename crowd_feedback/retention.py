"""Personal data in the turn log: originals are redacted in place after the retention period, and a
customer's conversation can be erased on request.

Review items, judgements and verified pairs only ever hold redacted text, so the turn log (``turns.user_text``
and ``turns.feedback_comment``) and the live chat (``conversation_messages.text``) are where
originals live; these functions are how they leave it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core import channels
from core.models import (
    Conversation,
    ConversationMessage,
    ConversationViewer,
    ReviewItem,
    ReviewItemTurn,
    Turn,
    utcnow,
)
from core.redaction import redact
from core.registry import get_conversation
from core.turn_search import compact_index

log = logging.getLogger(__name__)


def redact_old_turns(
    session: Session,
    *,
    before: datetime,
    batch_size: int = 500,
    report: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Replace the original message and feedback comment of every turn logged before ``before`` by their
    redacted form, and mark the turn; the same for the live chat's messages and the comments on its ratings;
    forget the contact left in conversations idle since before then. Commits after each batch (a table of
    millions of turns is not one transaction), so a cancelled or interrupted run keeps whole batches and the
    next run goes on."""
    waiting = (Turn.created_at < before, Turn.redacted_at.is_(None))
    total = session.scalar(select(func.count()).select_from(Turn).where(*waiting)) or 0
    done = changed = 0
    while True:
        turns = session.scalars(select(Turn).where(*waiting).order_by(Turn.id).limit(batch_size)).all()
        if not turns:
            break
        now = utcnow()
        for turn in turns:
            redacted = redact(turn.user_text)
            changed += redacted != turn.user_text
            turn.user_text = redacted
            if turn.feedback_comment:
                turn.feedback_comment = redact(turn.feedback_comment)
            if turn.context_text:  # the earlier question a follow-up was read with
                turn.context_text = redact(turn.context_text)
            if turn.read_as:  # the message as the model read it (misspelt words corrected)
                turn.read_as = redact(turn.read_as)
            turn.redacted_at = now
        session.commit()
        done += len(turns)
        if report is not None:
            report(0.9 * done / max(total, 1), f"{done}/{total} turns redacted")
    live = (
        ConversationMessage.created_at < before,  # both sides: a reply may quote the customer's details
        ConversationMessage.redacted_at.is_(None),
    )
    messages = 0
    while True:
        rows = session.scalars(
            select(ConversationMessage).where(*live).order_by(ConversationMessage.id).limit(batch_size)
        ).all()
        if not rows:
            break
        now = utcnow()
        for message in rows:
            message.text = redact(message.text)
            message.redacted_at = now
        session.commit()
        messages += len(rows)
    contacts = session.scalars(
        select(Conversation.id).where(
            Conversation.last_activity_at < before, Conversation.contact.is_not(None)
        )
    ).all()
    if contacts:
        session.execute(update(Conversation).where(Conversation.id.in_(contacts)).values(contact=None))
        session.commit()
    comments = 0  # the customers' comments on their rating of a live chat (redacting twice changes nothing)
    for conversation in session.scalars(
        select(Conversation).where(Conversation.rated_at < before, Conversation.rating_comment.is_not(None))
    ):
        redacted = redact(conversation.rating_comment or "")
        if redacted != conversation.rating_comment:
            conversation.rating_comment, comments = redacted, comments + 1
    session.commit()
    if done:  # the originals' trigrams leave the search index too

        def merged(share: float) -> None:
            if report is not None:
                report(0.9 + 0.09 * share, "merging the search index")

        compact_index(session, progress=merged)
    return {
        "before": before.isoformat(),
        "turns": done,
        "turns_with_personal_data": changed,
        "live_chat_messages": messages,
        "contacts_cleared": len(contacts),
        "rating_comments_redacted": comments,
    }


def erase_conversation(session: Session, *, conversation_id: str, actor: str) -> dict[str, int]:
    """A customer's request to be forgotten: delete the conversation and its turns, and the pending review
    items that had no other member (nobody needs to label a question that is no longer asked). Resolved items
    and their training pairs stay: they hold only redacted text (the earlier turns kept for reviewers with the
    items that had a turn of it, review_items.context, are cleared). Returns what was deleted. On SQLite the
    rows are zeroed in the file (``secure_delete``), and the caller then empties the write-ahead log
    (``Database.checkpoint``) so no older copy of the pages stays behind. SQLite's search index keeps a
    deleted text's entries until it is merged: the caller merges it once this is committed
    (``core.turn_search.compact_index``: the CLI before it returns, the web app in a ``search_compact``
    job)."""
    get_conversation(session, conversation_id=conversation_id)  # NotFoundError for an unknown id
    turn_ids = select(Turn.id).where(Turn.conversation_id == conversation_id)
    touched = set(
        session.scalars(select(ReviewItemTurn.item_id).where(ReviewItemTurn.turn_id.in_(turn_ids))).all()
    )
    # The earlier turns kept with those items for reviewers: this customer's words, whatever becomes of them.
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.id.in_(touched), ReviewItem.context.is_not(None))
        .values(context=None)
    )
    session.execute(delete(ReviewItemTurn).where(ReviewItemTurn.turn_id.in_(turn_ids)))
    turns = session.scalar(
        select(func.count()).select_from(Turn).where(Turn.conversation_id == conversation_id)
    )
    session.execute(delete(Turn).where(Turn.conversation_id == conversation_id))
    session.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id))
    session.execute(delete(ConversationViewer).where(ConversationViewer.conversation_id == conversation_id))
    channels.erase(session, conversation_id=conversation_id)  # the app's id of the chat, unsent messages
    session.execute(delete(Conversation).where(Conversation.id == conversation_id))
    orphaned = select(ReviewItemTurn.item_id).where(ReviewItemTurn.item_id == ReviewItem.id)
    doomed = select(ReviewItem.id).where(
        ReviewItem.id.in_(touched),
        ReviewItem.status == "pending",
        ReviewItem.is_gold.is_(False),
        ~orphaned.exists(),
    )
    item_ids = list(session.scalars(doomed).all())
    session.execute(delete(ReviewItem).where(ReviewItem.id.in_(item_ids)))
    items = len(item_ids)
    session.expire_all()
    log.info(
        "conversation %s erased by %s: %d turns, %d pending review items",
        conversation_id,
        actor,
        turns,
        items,
    )
    return {"turns": int(turns or 0), "review_items": int(items or 0)}
