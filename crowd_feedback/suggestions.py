"""New-intent suggestions: what customers ask that no intent answers, as the reviewers found it.

When reviewers resolve an item as "none fits — suggest a new intent", the item is a suggestion: its member
questions (redacted) and the reviewers' proposals. Operators see them most-asked first, decide each by hand:

- **adopt**: one new intent (name, title, answer) is created in the knowledge base from one or several
  suggestions; their member questions become its example questions (a new knowledge-base version), so the
  next retraining learns it;
- **add to an existing intent**: the operator settles the item with that intent (``operator_resolve``): its
  questions become verified training pairs, as if the reviewers had chosen it;
- **dismiss**: not worth an intent; the item leaves the list, settled "none fits" (weight 1, also when the
  reviewers had split): its questions stay out-of-scope training pairs, so the bot keeps handing them to a
  person (``crowd_feedback.review._write_verified_pairs``).

Until it is decided, a suggestion the reviewers resolved teaches the next retraining the same: its questions
are out of scope. Adopting it deletes those pairs (the questions are the new intent's examples).

Each decision marks the item as settled by the operator, so bulk re-aggregation never undoes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from core.kb_files import (
    MAX_ANSWER_LENGTH,
    MAX_EXAMPLE_LENGTH,
    IntentData,
    KnowledgeBaseFormatError,
    Origin,
    check_intent_name,
    check_text,
)
from core.knowledge_base import import_knowledge_base, load_knowledge_base
from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn, VerifiedPair, utcnow
from crowd_feedback.review import (
    NEW_INTENT,
    ReviewPolicy,
    mark_settled,
    member_questions,
    replace_verified_pairs,
)

MAX_TITLE_LENGTH = 200


class SuggestionError(ValueError):
    """An adopt/dismiss request that cannot be carried out; nothing was written."""


@dataclass
class Suggestion:
    item_id: int
    status: str  # resolved | escalated
    question: str  # the question reviewers were shown (redacted)
    questions: list[str]  # every distinct member question (redacted), shown one first
    asked: int  # member turns: how often customers asked it
    proposals: list[tuple[str, int]]  # reviewers' proposed intents, most frequent first
    confidence: float | None
    first_asked: datetime | None
    last_asked: datetime | None
    reviewers: int = 0
    labels: dict[str, int] = field(default_factory=dict)  # every judgement's label (escalated items disagree)
    bot_guesses: list[str] = field(default_factory=list)  # the bot's top intents for the question, best first


def _open_suggestions() -> Select[Any]:
    return select(ReviewItem).where(
        ReviewItem.is_gold.is_(False),
        ReviewItem.status.in_(("resolved", "escalated")),
        ReviewItem.resolved_label == NEW_INTENT,
        ReviewItem.settled_by.is_(None),
    )


def _questions(session: Session, item: ReviewItem) -> list[str]:
    """The question reviewers were shown, then every other distinct member question (redacted)."""
    return [item.text, *member_questions(session, item=item, limit=None)]


def _proposals(texts: Sequence[str | None]) -> list[tuple[str, int]]:
    """Reviewers' free-text proposals, merged case- and space-insensitively, most frequent first."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for text in texts:
        cleaned = " ".join((text or "").split())
        if not cleaned:
            continue
        key = cleaned.casefold()
        spelling.setdefault(key, cleaned)
        counts[key] += 1
    return [(spelling[key], n) for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def intent_suggestions(session: Session, *, limit: int = 200) -> list[Suggestion]:
    """Open suggestions (resolved or escalated as "new intent", not yet decided by an operator), the most
    asked first, then the newest."""
    items = session.scalars(
        _open_suggestions().order_by(ReviewItem.cluster_size.desc(), ReviewItem.id.desc()).limit(limit)
    ).all()
    result = []
    for item in items:
        asked, first_asked, last_asked = session.execute(
            select(func.count(), func.min(Turn.created_at), func.max(Turn.created_at))
            .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
            .where(ReviewItemTurn.item_id == item.id)
        ).one()
        judgements = session.execute(
            select(Judgement.label, Judgement.new_intent_text).where(Judgement.item_id == item.id)
        ).all()
        result.append(
            Suggestion(
                item_id=item.id,
                status=item.status,
                question=item.text,
                questions=_questions(session, item),
                asked=int(asked) or 1,
                proposals=_proposals([text for label, text in judgements if label == NEW_INTENT]),
                confidence=item.resolved_confidence,
                first_asked=first_asked,
                last_asked=last_asked,
                reviewers=len(judgements),
                labels=dict(Counter(label for label, _ in judgements)),
                bot_guesses=[str(c["intent"]) for c in (item.candidates or []) if c.get("intent")][:3],
            )
        )
    return result


def count_suggestions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(_open_suggestions().subquery())) or 0)


def _open_item(session: Session, item_id: int) -> ReviewItem:
    # Row lock on PostgreSQL: two operators deciding one suggestion at once are serialised, and the second
    # finds it no longer open (SQLite: the web app's write lock does the same).
    item = session.scalars(_open_suggestions().where(ReviewItem.id == item_id).with_for_update()).first()
    if item is None:
        raise SuggestionError(f"review item {item_id} is not an open new-intent suggestion")
    return item


def _settle(session: Session, item: ReviewItem, *, label: str, actor: str, now: datetime) -> None:
    item.status, item.resolved_label = "resolved", label
    item.resolved_confidence = 1.0  # the operator's own decision
    item.resolved_at = item.resolved_at or now
    mark_settled(session, item=item, actor=actor, now=now)


@dataclass
class Adopted:
    intent: str
    kb_version_id: int
    examples: int
    items: list[int]


def adopt_suggestions(
    session: Session,
    *,
    item_ids: Sequence[int],
    name: str,
    answer: str,
    title: str = "",
    actor: str,
    now: datetime | None = None,
) -> Adopted:
    """Create intent ``name`` from the member questions of the suggestions ``item_ids`` (a new knowledge-base
    version) and settle the items with it. Raises SuggestionError (and writes nothing the caller keeps: roll
    back) on a bad name, an existing intent, an empty answer or an item that is not an open suggestion.
    ``actor``: the operator's username (or "cli"); callers check the role."""
    if not item_ids:
        raise SuggestionError("choose at least one suggestion")
    where = "<new intent>"
    try:
        name = check_intent_name(where, None, "name", name)
        answer = check_text(where, None, "answer", answer, limit=MAX_ANSWER_LENGTH)
        title = " ".join((title or "").split())
        if len(title) > MAX_TITLE_LENGTH:
            raise KnowledgeBaseFormatError(where, None, "title", f"is {len(title)} characters, limit 200")
    except KnowledgeBaseFormatError as exc:
        raise SuggestionError(f"{exc.field}: {exc.message}") from exc
    existing = load_knowledge_base(session)
    if name in existing.intents:
        raise SuggestionError(
            f"intent {name!r} already exists: add the suggestion to it instead, or choose another name"
        )
    items = [_open_item(session, item_id) for item_id in dict.fromkeys(int(i) for i in item_ids)]
    examples: list[str] = []
    for item in items:
        texts = _questions(session, item)
        examples.extend(" ".join(t.split())[:MAX_EXAMPLE_LENGTH] for t in texts)
    examples = [t for t in dict.fromkeys(examples) if t]
    origin = Origin(f"suggestions {', '.join(str(i.id) for i in items)}", None)
    # The whole knowledge base with the new intent added (it was loaded above to check the name).
    existing.intents[name] = IntentData(
        name=name, title=title, answer=answer, examples=examples, origin=origin
    )
    try:
        result = import_knowledge_base(
            session,
            incoming=existing,
            replace=True,
            source=f"new intent {name} from review items {', '.join(str(i.id) for i in items)}, "
            f"adopted by {actor}",
        )
    except KnowledgeBaseFormatError as exc:
        raise SuggestionError(str(exc)) from exc
    now = now or utcnow()
    for item in items:
        _settle(session, item, label=name, actor=actor, now=now)
        # The questions are now the intent's own examples: no training pair would add anything.
        session.execute(delete(VerifiedPair).where(VerifiedPair.item_id == item.id))
    session.flush()
    return Adopted(name, result.kb_version_id, len(examples), [item.id for item in items])


def dismiss_suggestion(
    session: Session, *, item_id: int, actor: str, policy: ReviewPolicy, now: datetime | None = None
) -> ReviewItem:
    """Not worth an intent: the item leaves the list, settled "none fits" by the operator (weight 1): its
    questions are out-of-scope training pairs (the bot hands them to a person)."""
    item = _open_item(session, item_id)
    _settle(session, item, label=NEW_INTENT, actor=actor, now=now or utcnow())
    replace_verified_pairs(session, item=item, label=NEW_INTENT, weight=1.0, known_intents=(), policy=policy)
    session.flush()
    return item


def open_suggestion(session: Session, *, item_id: int) -> ReviewItem:
    """The open suggestion ``item_id`` (for adding it to an existing intent via ``operator_resolve``)."""
    return _open_item(session, item_id)
