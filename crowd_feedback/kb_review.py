"""Asking reviewers about a knowledge-base example that the check flagged (the model reads it as another
intent): the operator need not know the domain to settle it.

The example becomes a review item like any other (reason ``kb_check``; ``kb_intent`` keeps the intent it is
filed under), shown with the production model's held-out view of it (what a model not trained on it said),
so reviewers are not handed the knowledge base's label. When it resolves (``review._write_verified_pairs``):
- to the intent it is filed under: it is kept as it is (``keep_example`` by "reviewers (item #N)"), so the
  check stops listing it;
- to another intent, "none fits" or "not a question": no training pair is written for it (that would file the
  question under two intents until someone moves it); the check shows the crowd's verdict next to Move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kb_checks import question_key
from core.knowledge_base import is_example
from core.models import Judgement, ReviewItem, utcnow
from core.redaction import redact
from crowd_feedback.gold import BotView
from crowd_feedback.review import KB_CHECK, ReviewError, ReviewPolicy, queue_key

# The queue's uncertainty of an item about a flagged example. The bot's confidence says nothing here: it is
# high for the other intent, which is exactly what is in dispute (1.0 would rank 100 examples asked at once
# ahead of every customer's question; the ageing of the queue does the rest).
KB_CHECK_UNCERTAINTY = 0.5


@dataclass(frozen=True)
class Asked:
    item_id: int
    status: str  # pending, resolved or escalated
    answers: int
    needed: int
    label: str | None  # the crowd's label once resolved; the leading one when escalated
    confidence: float | None


def ask_reviewers(
    session: Session, *, text: str, intent: str, view: BotView | None, policy: ReviewPolicy
) -> tuple[ReviewItem, bool]:
    """A review item asking which intent ``text`` (an example of ``intent``) belongs to; (item, False) when
    one is already open or settled for it. Refused (ReviewError) when it is not an example of ``intent``."""
    if not is_example(session, text=text, intent=intent):
        raise ReviewError(f"{text!r} is not an example of {intent!r} (any more)")
    for item in session.scalars(select(ReviewItem).where(ReviewItem.kb_intent == intent)):
        if question_key(item.text) == question_key(redact(text)):
            return item, False
    now = utcnow()
    uncertainty = KB_CHECK_UNCERTAINTY
    item = ReviewItem(
        status="pending",
        reasons=[KB_CHECK],
        text=redact(text),
        kb_intent=intent,
        cluster_size=1,
        uncertainty=uncertainty,
        queue_key=queue_key(uncertainty, 1, now, policy),
        bot_intent=view.intent if view is not None else None,
        bot_answer=view.answer if view is not None else "",
        bot_confidence=view.confidence if view is not None else 0.0,
        candidates=list(view.candidates) if view is not None else [],
        required_judgements=policy.judgements,
        created_at=now,
    )
    session.add(item)
    session.flush()
    return item, True


def asked_about(session: Session, *, intents: Sequence[str] | None = None) -> dict[tuple[str, str], Asked]:
    """Every example reviewers were asked about, by (question key, intent filed under)."""
    query = select(ReviewItem).where(ReviewItem.kb_intent.is_not(None))
    if intents is not None:
        query = query.where(ReviewItem.kb_intent.in_(list(intents)))
    items = list(session.scalars(query))
    answers = dict(
        session.execute(
            select(Judgement.item_id, func.count())
            .where(Judgement.item_id.in_([item.id for item in items]))
            .group_by(Judgement.item_id)
        ).all()
    )
    return {
        (question_key(item.text), item.kb_intent or ""): Asked(
            item_id=item.id,
            status=item.status,
            answers=int(answers.get(item.id, 0)),
            needed=item.required_judgements,
            label=item.resolved_label,
            confidence=item.resolved_confidence,
        )
        for item in items
    }
