"""The review loop's domain functions: route turns into review items, hand items to reviewers under leases,
take judgements, score reviewers on gold items, resolve items into verified training pairs.

All take the session first and keyword-only arguments; the caller owns the transaction (the web request or
the job), so the API, the reviewer pages and the tests share exactly this code.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import String, and_, cast, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, defer, load_only

from bot.engine import in_context
from bot.repetition import ASKED_AGAIN
from core.events import emit
from core.kb_files import OUT_OF_SCOPE, KnowledgeBaseFormatError
from core.knowledge_base import filed_elsewhere, keep_example
from core.models import (
    Claim,
    Judgement,
    ReviewItem,
    ReviewItemTurn,
    Turn,
    User,
    VerifiedPair,
    as_utc,
    utcnow,
)
from core.redaction import redact
from core.registry import CHIP_PAYLOAD, SUGGESTION_ARM, shown_suggestions
from core.settings import Settings
from crowd_feedback.reviewers import count_gold, suspend

NEW_INTENT = "new_intent"
NOT_A_QUESTION = "not_a_question"
SPECIAL_LABELS = (NEW_INTENT, NOT_A_QUESTION)
# kb_check: a knowledge-base example the check flagged, which an operator asked reviewers about. off_topic:
# declined as unlike every knowledge-base example (bot.handoff.OFF_TOPIC): a question no intent covers yet, or
# spam, which an operator can find by this reason and settle in bulk as "not a real question".
KB_CHECK = "kb_check"
# asked_again: the customer asked again for the answer the bot had just given (bot.repetition): answered
# wrongly, or the answer lacks what they need.
REASONS = ("clarify", "handoff", "off_topic", "thumbs_down", "disagreement", "audit", KB_CHECK, ASKED_AGAIN)


class ReviewError(ValueError):
    """A review action that is not allowed (no claim, already judged, suspended reviewer, ...)."""


@dataclass(frozen=True)
class ReviewPolicy:
    audit_rate: float = 0.02
    judgements: int = 3
    max_judgements: int = 5
    lease: timedelta = timedelta(minutes=10)
    cluster_similarity: float = 0.85
    posterior_threshold: float = 0.9
    ageing_per_hour: float = 0.05
    gold_rate: float = 0.1
    gold_min_answered: int = 5
    gold_min_accuracy: float = 0.6
    model_voter: bool = True
    members_shown: int = 8
    # Earlier turns of a question's conversation stored with its item (redacted) for reviewers: at most this
    # many, asked within context_window before it.
    context_turns: int = 3
    context_window: timedelta = timedelta(minutes=60)
    # How long a reviewer may take back their last answer (a key pressed by mistake) while its item waits for
    # more judgements; zero: never.
    change_window: timedelta = timedelta(minutes=10)
    # A new reviewer's first answers are practice: gold items, with the expected answer shown after each
    # (0: none). With gold_min_answered no larger, failing the practice suspends before any real item.
    qualification_items: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewPolicy:
        return cls(
            audit_rate=settings.review_audit_rate,
            judgements=settings.review_judgements,
            max_judgements=settings.review_max_judgements,
            lease=timedelta(minutes=settings.review_lease_minutes),
            cluster_similarity=settings.review_cluster_similarity,
            posterior_threshold=settings.review_posterior_threshold,
            ageing_per_hour=settings.review_ageing_per_hour,
            gold_rate=settings.gold_rate,
            gold_min_answered=settings.gold_min_answered,
            gold_min_accuracy=settings.gold_min_accuracy,
            model_voter=settings.review_model_voter,
            members_shown=settings.review_members_shown,
            context_turns=settings.review_context_turns,
            context_window=timedelta(minutes=settings.review_context_minutes),
            change_window=timedelta(minutes=settings.review_change_minutes),
            qualification_items=settings.review_qualification_items,
        )


def queue_key(uncertainty: float, size: int, created: datetime, policy: ReviewPolicy) -> float:
    # ORDER BY queue_key DESC == ORDER BY uncertainty*size + ageing*(now - created) DESC, for any "now".
    return uncertainty * size - policy.ageing_per_hour * (created.timestamp() / 3600.0)


def review_reasons(
    *,
    status: str,
    members_disagree: bool,
    audit_draw: float,
    policy: ReviewPolicy,
    asked_again: bool = False,
) -> list[str]:
    """Why a turn goes to review: ``status`` as logged (answered, clarify, handoff or off_topic);
    ``asked_again``: the customer asked again for the conversation's last answer (bot.repetition), which
    leaves the audit draw as it is (the audited precision stays a sample of all confident answers)."""
    reasons = []
    if status in ("clarify", "handoff", "off_topic"):
        reasons.append(status)
    if members_disagree:
        reasons.append("disagreement")
    if status == "answered" and not reasons and audit_draw < policy.audit_rate:
        reasons.append("audit")
    if asked_again:
        reasons.append(ASKED_AGAIN)
    return reasons


def model_candidates(turn: Turn) -> list[dict[str, Any]]:
    """The model's own top candidates for a turn's question. Under a metadata filter the logged candidates are
    the intents the page let through, and the right label may be one it left out: the model's candidates
    among all intents, kept with the filter, are what reviewers are offered first and what truth inference
    weighs."""
    unfiltered = (turn.metadata_filter or {}).get("candidates")
    return list(unfiltered) if unfiltered else list(turn.candidates or [])


def model_confidence(turn: Turn) -> float:
    """How sure the model is of a turn's question: under a metadata filter, of its own best intent among all
    (kept with the filter), not of the answer the page allowed. A question it was sure of, asked where its
    answer was filtered out, is no urgent review."""
    unfiltered = (turn.metadata_filter or {}).get("confidence")
    return float(unfiltered if unfiltered is not None else turn.confidence)


def route_turn(
    session: Session,
    *,
    turn: Turn,
    reasons: Sequence[str],
    embedding: Sequence[float] | np.ndarray | None,
    policy: ReviewPolicy,
    now: datetime | None = None,
) -> ReviewItem | None:
    """Put a turn into review: join a pending item with a similar question (same bot intent, cosine at or
    above the policy's similarity) or open a new one. Returns the item, or None when there is no reason.

    An item's vector stays the one of the question its reviewers are shown (its first turn), not the mean of
    its members: the reviewers' label is copied to every member, so a member must be close to what they
    judged. A running mean drifts, and lets in questions far from the shown one (loop benchmark, validation
    rows, seeds 0-2, items built per round from the most uncertain question outward: review ratio
    0.46 / 0.38 / 0.55 anchored, 0.62 / 0.49 / 0.65 with the running mean)."""
    if not reasons:
        return None
    now = now or utcnow()
    linked = session.scalars(select(ReviewItemTurn).where(ReviewItemTurn.turn_id == turn.id)).first()
    if linked is not None:
        # Already in review (e.g. routed for disagreement, then thumbs-down): add the new reason only.
        existing = session.get(ReviewItem, linked.item_id)
        if existing is not None:
            existing.reasons = sorted(set(existing.reasons) | set(reasons))
            linked.reason = ",".join(sorted(set(linked.reason.split(",")) | set(reasons)))[:30]
            session.flush()
        return existing
    vector = None if embedding is None else np.asarray(embedding, dtype=np.float32)
    uncertainty = 1.0 - model_confidence(turn)
    if "audit" in reasons:
        uncertainty = max(uncertainty, 0.05)  # audits are unbiased samples, still worth doing
    best = similar_pending_item(session, turn, vector, policy)
    if best is not None:
        joined = _join(
            session, best, turn, reasons=reasons, reason=reasons[0], uncertainty=uncertainty, policy=policy
        )
        if joined is not None:
            return joined
    candidates = model_candidates(turn)
    top_intent = candidates[0]["intent"] if candidates else None
    item = ReviewItem(
        status="pending",
        reasons=list(reasons),
        text=redact(turn.user_text),
        embedding=None if vector is None else vector.tolist(),
        cluster_size=1,
        uncertainty=uncertainty,
        queue_key=queue_key(uncertainty, 1, now, policy),
        bot_intent=turn.intent or top_intent,
        bot_answer=turn.answer,
        bot_confidence=turn.confidence,
        candidates=candidates[:5],
        context=conversation_context(session, turn=turn, policy=policy),
        required_judgements=policy.judgements,
        created_at=now,
    )
    session.add(item)
    session.flush()
    session.add(ReviewItemTurn(item_id=item.id, turn_id=turn.id, reason=reasons[0]))
    session.flush()
    return item


def conversation_context(
    session: Session, *, turn: Turn, policy: ReviewPolicy
) -> list[dict[str, Any]] | None:
    """The turns of ``turn``'s conversation just before it, as its review item keeps them for reviewers: at
    most ``policy.context_turns``, asked within ``policy.context_window`` before it, oldest first, each the
    customer's words redacted with what the bot did (status, intent, the "did you mean" choice the customer
    picked, their thumbs); ``clicked``: the turn is a chip the customer clicked (its text the "/intent" it
    sent). None when there are none (a first question, or context_turns 0)."""
    if policy.context_turns <= 0:
        return None
    asked = as_utc(turn.created_at or utcnow())
    rows = session.execute(
        select(Turn.user_text, Turn.status, Turn.intent, Turn.chosen_intent, Turn.helpful, Turn.served_by)
        .where(
            Turn.conversation_id == turn.conversation_id,
            Turn.id < turn.id,
            Turn.created_at >= asked - policy.context_window,
            Turn.created_at <= asked,
        )
        .order_by(Turn.id.desc())
        .limit(policy.context_turns)
    ).all()
    context = [
        {
            "text": redact(text),
            "status": status,
            "intent": intent,
            "chosen_intent": chosen_intent,
            "helpful": helpful,
            "clicked": served_by == SUGGESTION_ARM,
        }
        for text, status, intent, chosen_intent, helpful, served_by in reversed(rows)
    ]
    return context or None


SIMILAR = "similar"  # the reason of a member that joined only because it resembles the item's question


def attach_similar_turn(
    session: Session,
    *,
    turn: Turn,
    embedding: Sequence[float] | np.ndarray | None,
    policy: ReviewPolicy,
) -> ReviewItem | None:
    """A turn with no reason for review (a confident answer) joins a pending item whose shown question it
    resembles, and never opens one: the reviewers' label then reaches it too, and the item's priority counts
    how often the question is asked. Returns the item it joined, or None.

    Loop benchmark (validation rows, seeds 0-2, items built per round from the most uncertain question
    outward): routed turns only, review ratio 0.52 / 0.42 / 0.56; with confident look-alikes joining,
    0.46 / 0.40 / 0.54 (more training pairs per review)."""
    if embedding is None:
        return None
    if session.scalars(select(ReviewItemTurn).where(ReviewItemTurn.turn_id == turn.id)).first() is not None:
        return None
    vector = np.asarray(embedding, dtype=np.float32)
    best = similar_pending_item(session, turn, vector, policy)
    if best is None:
        return None
    uncertainty = 1.0 - model_confidence(turn)
    return _join(session, best, turn, reasons=[], reason=SIMILAR, uncertainty=uncertainty, policy=policy)


def similar_pending_item(
    session: Session, turn: Turn, vector: Sequence[float] | np.ndarray | None, policy: ReviewPolicy
) -> ReviewItem | None:
    """The pending item (same bot intent) whose shown question is most similar to the turn, at or above the
    policy's similarity; among the 200 newest of that intent."""
    if vector is None:
        return None
    vector = np.asarray(vector, dtype=np.float32)
    candidates = session.scalars(
        select(ReviewItem)
        .where(
            ReviewItem.status == "pending",
            ReviewItem.is_gold.is_(False),
            ReviewItem.bot_intent == (turn.intent or next(iter(model_candidates(turn)), {}).get("intent")),
        )
        .order_by(ReviewItem.id.desc())
        .limit(200)
    ).all()
    best: ReviewItem | None = None
    best_similarity = policy.cluster_similarity
    for item in candidates:
        if not item.embedding:
            continue
        shown = np.asarray(item.embedding, dtype=np.float32)  # the question its reviewers see
        norms = float(np.linalg.norm(shown) * np.linalg.norm(vector))
        similarity = float(shown @ vector) / max(norms, 1e-12)
        if similarity >= best_similarity:
            best, best_similarity = item, similarity
    return best


def unvectored_items(session: Session, *, limit: int = 50) -> list[tuple[ReviewItem, str]]:
    """Pending items that have no vector, each with the original text of its shown question (the member
    turn whose redacted text the reviewers see; else its earliest), oldest first: items re-opened for a
    member the reviewers split off (``split_off_rejected``, which runs where no encoder is at hand), or
    routed while no model was serving. Until they get a vector, look-alikes cannot join them; the router
    embeds these texts and stores the vectors (``set_item_vectors``). An item about a follow-up the bot read
    with the question before it (``Turn.context_text``) never gets one: its words alone ("how long does that
    take?") would draw in every look-alike, whatever each was asked after."""
    read_in_context = (
        select(ReviewItemTurn.item_id)
        .join(Turn, Turn.id == ReviewItemTurn.turn_id)
        .where(ReviewItemTurn.item_id == ReviewItem.id, Turn.context_text.is_not(None))
        .exists()
    )
    ids = session.scalars(
        select(ReviewItem.id)
        .where(
            ReviewItem.status == "pending",
            ReviewItem.is_gold.is_(False),
            ReviewItem.embedding.is_(None),  # SQL NULL (migration 0006 turned older JSON nulls into it)
            ~read_in_context,
        )
        .order_by(ReviewItem.id)
        .limit(limit)
    ).all()
    if not ids:
        return []
    items = {item.id: item for item in session.scalars(select(ReviewItem).where(ReviewItem.id.in_(ids)))}
    shown: dict[int, str] = {}
    for item_id, text in session.execute(
        select(ReviewItemTurn.item_id, Turn.user_text)
        .join(Turn, Turn.id == ReviewItemTurn.turn_id)
        .where(ReviewItemTurn.item_id.in_(ids))
        .order_by(Turn.id)
    ):
        if item_id not in shown or (
            items[item_id].shown_text(redact(text)) == items[item_id].text != redact(shown[item_id])
        ):
            shown[item_id] = text
    return [(items[i], shown[i]) for i in ids if i in shown]


def set_item_vectors(items: Sequence[ReviewItem], vectors: np.ndarray | Sequence[Sequence[float]]) -> None:
    """Store each item's vector (the embedding of its shown question); an item that gained one meanwhile
    keeps its own."""
    if len(items) != len(vectors):
        raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
    for item, vector in zip(items, vectors, strict=True):
        if item.embedding is None:
            item.embedding = np.asarray(vector, dtype=np.float32).tolist()


def _join(
    session: Session,
    item: ReviewItem,
    turn: Turn,
    *,
    reasons: Sequence[str],
    reason: str,
    uncertainty: float,
    policy: ReviewPolicy,
) -> ReviewItem | None:
    """Add ``turn`` to ``item`` as a member; None when the item was settled since it was found (then it
    takes no more members). Its row is locked first (``locked_item``): routers of two web processes joining
    one item at once would otherwise count one member, and a member joining while an answer resolves the
    item would miss its training pair."""
    locked = locked_item(session, item.id)
    if locked is None or locked.status != "pending":
        return None
    item = locked
    item.cluster_size += 1
    item.uncertainty = max(item.uncertainty, uncertainty)
    item.reasons = sorted(set(item.reasons) | set(reasons))
    item.queue_key = queue_key(item.uncertainty, item.cluster_size, item.created_at, policy)
    session.add(ReviewItemTurn(item_id=item.id, turn_id=turn.id, reason=reason))
    session.flush()
    return item


def add_gold_item(session: Session, *, text: str, label: str, policy: ReviewPolicy) -> ReviewItem:
    """A question with a known answer, mixed into reviewers' queues to measure their accuracy."""
    item = ReviewItem(
        status="pending",
        reasons=["gold"],
        text=redact(text),
        is_gold=True,
        gold_label=label,
        uncertainty=0.0,
        queue_key=0.0,
        required_judgements=10**6,
        bot_intent=None,
    )
    session.add(item)
    session.flush()
    return item


def _judged_by(reviewer_id: int) -> Any:
    return exists().where(and_(Judgement.item_id == ReviewItem.id, Judgement.reviewer_id == reviewer_id))


def _open_to(reviewer_id: int, now: datetime) -> tuple[Any, ...]:
    """Conditions on ReviewItem: a pending real question this reviewer has not judged that still needs
    judgements beyond those given and those claimed now."""
    live_claims = (
        select(func.count())
        .select_from(Claim)
        .where(Claim.item_id == ReviewItem.id, Claim.expires_at > now)
        .scalar_subquery()
    )
    judgement_count = (
        select(func.count())
        .select_from(Judgement)
        .where(Judgement.item_id == ReviewItem.id)
        .scalar_subquery()
    )
    return (
        ReviewItem.status == "pending",
        ReviewItem.is_gold.is_(False),
        ReviewItem.privacy_reported_at.is_(None),
        ~_judged_by(reviewer_id),
        judgement_count + live_claims < ReviewItem.required_judgements,
    )


def waiting_for(session: Session, *, reviewer: User, now: datetime | None = None) -> int:
    """How many questions "next item" could give this reviewer now (check questions aside)."""
    now = now or utcnow()
    count = select(func.count()).select_from(ReviewItem).where(*_open_to(reviewer.id, now))
    return int(session.scalar(count) or 0)


def practice_available(session: Session, *, reviewer: User) -> int:
    """How many check questions (gold) this reviewer has not answered yet: what their practice can draw on."""
    count = (
        select(func.count())
        .select_from(ReviewItem)
        .where(ReviewItem.is_gold.is_(True), ReviewItem.status == "pending", ~_judged_by(reviewer.id))
    )
    return int(session.scalar(count) or 0)


def next_item(
    session: Session,
    *,
    reviewer: User,
    policy: ReviewPolicy,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> ReviewItem | None:
    """Claim the most urgent item this reviewer has not judged and that still needs judgements.

    Concurrency: candidate rows are locked with FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite serialises
    writers), and the count of judgements plus live claims is checked while the row is locked, so no item
    is handed out more often than it needs."""
    if reviewer.suspended_at is not None or not reviewer.active:
        raise ReviewError("this reviewer is suspended")
    now = now or utcnow()
    rng = rng or random.Random()
    existing = session.scalars(
        select(Claim).where(Claim.reviewer_id == reviewer.id, Claim.expires_at > now)
    ).first()
    if existing is not None:
        item = session.get(ReviewItem, existing.item_id)
        if item is not None and item.status == "pending" and item.privacy_reported_at is None:
            return item  # finish what you started (a reload does not skip an item)
    session.execute(delete(Claim).where(Claim.expires_at <= now))
    dialect = session.get_bind().dialect.name
    if in_practice(reviewer, policy) or rng.random() < policy.gold_rate:
        gold = _lock(
            session,
            select(ReviewItem)
            .where(
                ReviewItem.is_gold.is_(True),
                ReviewItem.status == "pending",
                ReviewItem.privacy_reported_at.is_(None),
                ~_judged_by(reviewer.id),
            )
            .order_by(func.random())
            .limit(1),
            dialect,
        )
        if gold:
            return _claim(session, gold[0], reviewer, now, policy)
    eligible = select(ReviewItem).where(*_open_to(reviewer.id, now))
    tried: set[int] = set()
    for _attempt in range(50):
        # One row at a time: a locked row is skipped (another reviewer is claiming it right now).
        query = eligible.where(ReviewItem.id.not_in(tried)) if tried else eligible
        rows = _lock(session, query.order_by(ReviewItem.queue_key.desc(), ReviewItem.id).limit(1), dialect)
        if not rows:
            if dialect != "postgresql" or not session.scalar(select(exists(eligible.subquery().select()))):
                return None
            time.sleep(0.01)  # everything eligible is locked for a moment: wait for those claims to land
            session.expire_all()
            continue
        item = rows[0]
        tried.add(item.id)
        # Re-count under the row lock: another reviewer may have claimed it since the query was planned.
        taken = (
            session.scalar(
                select(func.count())
                .select_from(Claim)
                .where(Claim.item_id == item.id, Claim.expires_at > now)
            )
            or 0
        )
        done = (
            session.scalar(select(func.count()).select_from(Judgement).where(Judgement.item_id == item.id))
            or 0
        )
        if taken + done < item.required_judgements:
            return _claim(session, item, reviewer, now, policy)
    return None


def _lock(session: Session, query: Any, dialect: str) -> list[ReviewItem]:
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True, of=ReviewItem)
    return list(session.scalars(query))


def _claim(
    session: Session, item: ReviewItem, reviewer: User, now: datetime, policy: ReviewPolicy
) -> ReviewItem:
    session.execute(delete(Claim).where(Claim.item_id == item.id, Claim.reviewer_id == reviewer.id))
    session.add(
        Claim(item_id=item.id, reviewer_id=reviewer.id, expires_at=now + policy.lease, claimed_at=now)
    )
    session.flush()
    return item


# A check question with at least this many answers, fewer than CONTESTED_BELOW of them matching its key, is
# contested: the key may be wrong (crowd_feedback.gold lists them; an ops event says when one becomes so).
CONTESTED_MIN_ANSWERS = 5
CONTESTED_BELOW = 0.5


def is_contested(answered: int, right: int) -> bool:
    return answered >= CONTESTED_MIN_ANSWERS and right / answered < CONTESTED_BELOW


def _announce_if_contested(session: Session, item: ReviewItem, newest: str) -> None:
    """The ``gold.contested`` ops event, once: on the answer (``newest``, already stored) that makes a check
    question contested when it was not before it. Operators should look before the key suspends good
    reviewers."""
    labels = list(session.scalars(select(Judgement.label).where(Judgement.item_id == item.id)))
    right = sum(label == item.gold_label for label in labels)
    before = (len(labels) - 1, right - int(newest == item.gold_label))
    if not is_contested(len(labels), right) or (before[0] and is_contested(*before)):
        return
    instead = Counter(label for label in labels if label != item.gold_label).most_common(1)
    emit(
        session,
        "gold.contested",
        f"Check question {item.id} is contested: {right} of {len(labels)} reviewers matched its key "
        f"“{item.gold_label}”; most answered “{instead[0][0]}” ({instead[0][1]}). Fix the key or retire it "
        f"before it suspends good reviewers. Question: “{item.text[:200]}”",
        path="/operator/gold",
        data={
            "item_id": item.id,
            "key": item.gold_label,
            "answered": len(labels),
            "matched": right,
            "most_given_instead": instead[0][0],
        },
    )


def in_practice(reviewer: User, policy: ReviewPolicy) -> bool:
    """A reviewer (not an operator) who has answered fewer gold items than ``qualification_items``: their
    next items are gold while any is left that they have not answered, and each answer is followed by the
    expected one. Reinstating a suspended reviewer starts the gold counts, so the practice, again."""
    return reviewer.role == "reviewer" and reviewer.gold_answered < policy.qualification_items


@dataclass(frozen=True)
class PracticeFeedback:
    """What a reviewer in practice is told after answering a gold item."""

    number: int  # this was practice question number ... of ``of``
    of: int
    chosen: str
    expected: str

    @property
    def right(self) -> bool:
        return self.chosen == self.expected


def practice_feedback(
    session: Session, reviewer: User, item: ReviewItem, label: str, policy: ReviewPolicy
) -> PracticeFeedback | None:
    """Call after ``submit_judgement``: the feedback when that answer was a practice question, else None
    (gold items outside the practice never reveal themselves). The practice is as long as
    ``qualification_items``, or shorter when fewer check questions are there to practise on."""
    if not item.is_gold or item.gold_label is None or reviewer.role != "reviewer":
        return None
    done = reviewer.gold_answered
    if not 0 < done <= policy.qualification_items:
        return None
    left = min(policy.qualification_items - done, practice_available(session, reviewer=reviewer))
    return PracticeFeedback(done, done + left, label, item.gold_label)


def _was_practice(reviewer: User, item: ReviewItem, policy: ReviewPolicy) -> bool:
    """Whether the reviewer's newest gold answer, ``item``'s, was practice (its expected answer shown)."""
    return (
        item.is_gold
        and reviewer.role == "reviewer"
        and 0 < reviewer.gold_answered <= policy.qualification_items
    )


def _why_unchangeable(
    session: Session, judgement: Judgement | None, reviewer: User, policy: ReviewPolicy, now: datetime
) -> str | None:
    """Why the reviewer's newest ``judgement`` cannot be taken back (None: it can)."""
    if judgement is None:
        return "you have no answer to change"
    if policy.change_window <= timedelta(0):
        return "answers cannot be changed here"
    if as_utc(judgement.created_at) < now - policy.change_window:
        minutes = policy.change_window.total_seconds() / 60
        return f"an answer can be changed for {minutes:g} minutes after it is given"
    item = session.get(ReviewItem, judgement.item_id)
    if item is not None and item.status == "escalated":
        return "its question went to an operator: your answer counted"
    if item is None or item.status != "pending":
        return "its question is settled already: your answer counted"
    if _was_practice(reviewer, item, policy):
        return "a practice answer stays as given (the expected answer was shown)"
    return None


def _newest_judgement(session: Session, reviewer: User) -> Judgement | None:
    return session.scalars(
        select(Judgement).where(Judgement.reviewer_id == reviewer.id).order_by(Judgement.id.desc()).limit(1)
    ).first()


def changeable_judgement(
    session: Session, *, reviewer: User, policy: ReviewPolicy, now: datetime | None = None
) -> Judgement | None:
    """The reviewer's last answer when they may still take it back (``withdraw_judgement``), else None."""
    newest = _newest_judgement(session, reviewer)
    return newest if _why_unchangeable(session, newest, reviewer, policy, now or utcnow()) is None else None


def withdraw_judgement(
    session: Session, *, item_id: int, reviewer: User, policy: ReviewPolicy, now: datetime | None = None
) -> ReviewItem:
    """Take back the reviewer's last answer, ``item_id``'s, and hand them that item again to answer anew: for
    a key pressed by mistake. Only the newest answer, within ``policy.change_window``, while the item still
    waits for judgements (an answer that settled it has made its label and pairs), never a practice answer
    (its expected answer was shown). A check question's answer is taken back from the reviewer's gold
    record too: hidden checks allow it like any other item, so the choice reveals nothing. The item the
    reviewer was shown next goes back to the queue. An extra judgement the answer's disagreement asked for
    stays asked."""
    now = now or utcnow()
    if reviewer.suspended_at is not None or not reviewer.active:
        raise ReviewError("this reviewer is suspended")
    newest = _newest_judgement(session, reviewer)
    if newest is None or newest.item_id != item_id:
        mine = session.scalar(
            select(func.count())
            .select_from(Judgement)
            .where(Judgement.item_id == item_id, Judgement.reviewer_id == reviewer.id)
        )
        raise ReviewError(
            "only your last answer can be changed" if mine else "you have not answered this item"
        )
    item = locked_item(session, item_id)
    why = _why_unchangeable(session, newest, reviewer, policy, now)
    if why is not None:
        raise ReviewError(why)
    assert newest is not None and item is not None  # _why_unchangeable checked both
    if item.is_gold:
        count_gold(session, reviewer=reviewer, answered=-1, correct=-int(newest.label == item.gold_label))
    session.delete(newest)
    session.execute(delete(Claim).where(Claim.reviewer_id == reviewer.id))
    session.flush()
    return _claim(session, item, reviewer, now, policy)


def report_personal_data(
    session: Session, *, item_id: int, reviewer: User, now: datetime | None = None
) -> ReviewItem:
    """A reviewer found personal data that redaction missed in the item they are shown (its question or the
    turns before it): the item leaves the queue, for every reviewer, until an operator redacts it by hand
    (``redact_reported_item``); the reviewer's claim ends and the operators hear of it (an ops event)."""
    now = now or utcnow()
    item, claim = _held_open_item(session, item_id, reviewer, now)
    session.delete(claim)
    if item.privacy_reported_at is None:
        item.privacy_reported_at, item.privacy_reported_by = now, reviewer.username[:80]
        emit(
            session,
            "item.personal_data",
            f"Review item {item.id} shows personal data that redaction missed (reported by reviewer "
            f"{reviewer.username}); it is out of the review queue until an operator redacts it.",
            path=f"/review/items/{item.id}",
            data={"item_id": item.id, "reviewer": reviewer.username},
        )
    session.flush()
    return item


def redact_reported_item(
    session: Session,
    *,
    item_id: int,
    text: str,
    context_texts: Sequence[str] | None,
    operator: User,
) -> ReviewItem:
    """An operator's hand redaction of what an item shows: its question (``text``) and the texts of the turns
    before it (``context_texts``, one per turn, in order; None: leave them). The automatic rules run over the
    result as well. Training pairs that carried the question's old text take the new one. The item goes back
    to the queue."""
    if operator.role != "operator":
        raise ReviewError("only operators can redact items")
    item = locked_item(session, item_id)
    if item is None:
        raise ReviewError("no such review item")
    text = redact(text.strip())
    if not text:
        raise ReviewError("the question cannot be empty")
    if len(text) > 2000:
        raise ReviewError(f"the question is {len(text)} characters; the limit is 2000")
    if context_texts is not None:
        turns = list(item.context or [])
        if len(context_texts) != len(turns):
            raise ReviewError(f"{len(turns)} earlier turn(s) to redact, not {len(context_texts)}")
        item.context = [
            turn | {"text": redact(new.strip())} for turn, new in zip(turns, context_texts, strict=True)
        ]
    session.execute(
        update(VerifiedPair)
        .where(VerifiedPair.item_id == item.id, VerifiedPair.text == item.text)
        .values(text=text)
    )
    if item.hand_redacted_from is None:
        item.hand_redacted_from = item.text
    item.text = text
    item.privacy_reported_at = item.privacy_reported_by = None
    session.flush()
    return item


def release_claim(session: Session, *, item_id: int, reviewer: User) -> None:
    """Skip: give the item back to the queue."""
    session.execute(delete(Claim).where(Claim.item_id == item_id, Claim.reviewer_id == reviewer.id))


def held_for(claim: Claim, now: datetime, active_seconds: float | None = None) -> float | None:
    """Seconds from taking the item to answering it (a reload keeps the claim, so it keeps counting); None
    for a claim taken before claims recorded when. With ``active_seconds`` (the review page's count of the
    time it was visible and in use), the smaller of the two: a tab left open over lunch is not work, and a
    page cannot claim more time than the claim has existed."""
    if claim.claimed_at is None:
        return None
    held = max(0.0, (as_utc(now) - as_utc(claim.claimed_at)).total_seconds())
    if active_seconds is not None and math.isfinite(active_seconds) and active_seconds >= 0:
        return min(held, float(active_seconds))
    return held


def reviewer_weight(reviewer: User, policy: ReviewPolicy) -> float:
    """Accuracy on gold with a Beta(4, 1) prior (new reviewers count as fairly good), for weighting votes."""
    return (reviewer.gold_correct + 4.0) / (reviewer.gold_answered + 5.0)


def locked_item(session: Session, item_id: int) -> ReviewItem | None:
    """The review item, read afresh and (PostgreSQL) locked until the transaction ends; SQLite serialises
    writers anyway. Whatever records or settles an item's outcome takes it this way first: two reviewers
    answering at once would otherwise each count the other's judgement out, both resolve the item and both
    write its training pairs (so would a reviewer and an operator settling it, or the bulk re-aggregation)."""
    query = select(ReviewItem).where(ReviewItem.id == item_id).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).first()


def _held_open_item(
    session: Session, item_id: int, reviewer: User, now: datetime
) -> tuple[ReviewItem, Claim]:
    """The pending item (locked, ``locked_item``) and the reviewer's live claim on it, or a ReviewError."""
    item = locked_item(session, item_id)
    if item is None or item.status != "pending":
        raise ReviewError("this item is no longer open")
    claim = session.scalars(
        select(Claim).where(
            Claim.item_id == item_id, Claim.reviewer_id == reviewer.id, Claim.expires_at > now
        )
    ).first()
    if claim is None:
        raise ReviewError("no active claim on this item (it may have expired): take the next item again")
    return item, claim


def submit_judgement(
    session: Session,
    *,
    item_id: int,
    reviewer: User,
    label: str,
    answer_ok: bool | None,
    new_intent_text: str | None = None,
    member_checks: dict[str, bool] | None = None,
    known_intents: Sequence[str],
    policy: ReviewPolicy,
    now: datetime | None = None,
    active_seconds: float | None = None,
    needs_context: bool | None = None,
) -> ReviewItem:
    """Record one reviewer's judgement on an item they hold a claim on, then resolve the item if it can be.
    Its time is the claim's age, or the page's active time when smaller (``held_for``). ``needs_context``:
    shown the turns before the question, whether it is clear only with them (``needs_conversation``).

    ``member_checks``: for the other member questions the reviewer was shown (``member_questions``), whether
    each asks the same as the shown question; a member most of its checkers rejected leaves the item when it
    resolves and gets no training pair (``split_off_rejected``)."""
    now = now or utcnow()
    if reviewer.suspended_at is not None:
        raise ReviewError("this reviewer is suspended")
    if label not in known_intents and label not in SPECIAL_LABELS:
        raise ReviewError(f"unknown intent {label!r}")
    if label == NEW_INTENT and not (new_intent_text or "").strip():
        raise ReviewError("describe the new intent")
    item, claim = _held_open_item(session, item_id, reviewer, now)
    already = session.scalar(
        select(func.count())
        .select_from(Judgement)
        .where(Judgement.item_id == item_id, Judgement.reviewer_id == reviewer.id)
    )
    if already:
        raise ReviewError("you already judged this item")
    if member_checks:
        unknown = set(member_checks) - set(member_questions(session, item=item, limit=None))
        if unknown:
            raise ReviewError(f"not a question of this item: {sorted(unknown)[0]!r}")
    session.add(
        Judgement(
            item_id=item_id,
            reviewer_id=reviewer.id,
            label=label,
            answer_ok=answer_ok,
            new_intent_text=(new_intent_text or "").strip() or None,
            member_checks={text: bool(same) for text, same in member_checks.items()}
            if member_checks
            else None,
            seconds=held_for(claim, now, active_seconds),
            needs_context=needs_context if item.context else None,
            created_at=now,
        )
    )
    session.delete(claim)
    session.flush()
    if item.is_gold:
        count_gold(session, reviewer=reviewer, answered=1, correct=int(label == item.gold_label))
        _announce_if_contested(session, item, label)
        if (
            reviewer.gold_answered >= policy.gold_min_answered
            and reviewer.gold_correct / reviewer.gold_answered < policy.gold_min_accuracy
        ):
            suspend(
                session,
                user=reviewer,
                reason=(
                    f"accuracy on gold {reviewer.gold_correct}/{reviewer.gold_answered} below "
                    f"{policy.gold_min_accuracy:.0%}"
                ),
                now=now,
            )
        session.flush()
        return item
    resolve_item(session, item=item, known_intents=known_intents, policy=policy, now=now)
    return item


def member_questions(session: Session, *, item: ReviewItem, limit: int | None) -> list[str]:
    """The item's other member questions (redacted, distinct, oldest first) that reviewers confirm as asking
    the same as the shown one; ``limit`` None: all of them."""
    texts = session.scalars(
        select(Turn.user_text)
        .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
        .where(ReviewItemTurn.item_id == item.id)
        .order_by(Turn.id)
    ).all()
    others = [text for text in dict.fromkeys(item.shown_text(redact(t)) for t in texts) if text != item.text]
    return others if limit is None else others[:limit]


def member_kept(checks: Sequence[bool]) -> bool:
    """A member question keeps the item's label unless its checkers did not say "same" more often than
    "different" (a tie drops it: a wrong training pair costs more than a missing one). Unchecked: kept."""
    if not checks:
        return True
    same = sum(1 for check in checks if check)
    return same > len(checks) - same


def rejected_members(session: Session, *, item: ReviewItem) -> set[str]:
    """Member questions that the reviewers' checks (suspended reviewers' ignored) do not keep."""
    rows = session.execute(
        select(Judgement.member_checks, User.suspended_at)
        .join(User, User.id == Judgement.reviewer_id)
        .where(Judgement.item_id == item.id)
    ).all()
    checks: dict[str, list[bool]] = {}
    for member_checks, suspended_at in rows:
        if suspended_at is None:
            for text, same in (member_checks or {}).items():
                checks.setdefault(text, []).append(bool(same))
    return {text for text, votes in checks.items() if not member_kept(votes)}


def split_off_rejected(session: Session, *, item: ReviewItem, policy: ReviewPolicy) -> list[ReviewItem]:
    """Member turns the reviewers rejected leave the item (its label is not theirs). Turns that were routed
    for a reason of their own (handoff, thumbs-down, ...) go back to review as a new item, one per rejected
    question, so that nothing routed is lost; confident look-alikes (reason "similar") are only let go.
    The new items have no vector (no encoder here) until the router gives them one (``unvectored_items``).
    Idempotent: returns the new items."""
    rejected = rejected_members(session, item=item)
    if not rejected:
        return []
    links = session.execute(
        select(ReviewItemTurn, Turn)
        .join(Turn, Turn.id == ReviewItemTurn.turn_id)
        .where(ReviewItemTurn.item_id == item.id)
        .order_by(Turn.id)
    ).all()
    reopened: dict[str, ReviewItem] = {}
    for link, turn in links:
        text = item.shown_text(redact(turn.user_text))
        if text not in rejected or text == item.text:
            continue
        session.delete(link)
        item.cluster_size -= 1
        session.flush()
        reasons = [r for r in link.reason.split(",") if r in REASONS]
        if not reasons:
            continue
        if text in reopened:
            _join(
                session,
                reopened[text],
                turn,
                reasons=reasons,
                reason=reasons[0],
                uncertainty=1.0 - model_confidence(turn),
                policy=policy,
            )
        else:
            new = route_turn(session, turn=turn, reasons=reasons, embedding=None, policy=policy)
            if new is not None:
                reopened[text] = new
    item.queue_key = queue_key(item.uncertainty, max(item.cluster_size, 1), item.created_at, policy)
    session.flush()
    return list(reopened.values())


def read_after(session: Session, *, item: ReviewItem) -> str | None:
    """The earlier question, redacted, that the bot read a member of ``item`` with (a follow-up,
    ``bot.follow_up``; the first such member's), or None when the bot read every member alone."""
    context = session.scalars(
        select(Turn.context_text)
        .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
        .where(ReviewItemTurn.item_id == item.id, Turn.context_text.is_not(None))
        .order_by(Turn.id)
        .limit(1)
    ).first()
    return redact(context) if context else None


def needs_conversation(session: Session, *, item: ReviewItem) -> bool:
    """Whether most of the item's reviewers (suspended ones aside) who were shown the turns before its
    question found it clear only with them. Such a question becomes no training pair when the bot read it
    alone: "and how long does that take?" filed under whatever came before would teach it a guess (one it
    read with the question before it is trained as read)."""
    if not item.context:
        return False
    votes = session.scalars(
        select(Judgement.needs_context)
        .join(User, User.id == Judgement.reviewer_id)
        .where(
            Judgement.item_id == item.id,
            Judgement.needs_context.is_not(None),
            User.suspended_at.is_(None),
        )
    ).all()
    return sum(1 for vote in votes if vote) * 2 > len(votes)


def _write_verified_pairs(
    session: Session,
    *,
    item: ReviewItem,
    label: str,
    weight: float,
    known_intents: Sequence[str],
    policy: ReviewPolicy,
) -> int:
    """The members the reviewers rejected leave the item first (``split_off_rejected``); every remaining
    member turn of the resolved item becomes a (redacted question, intent) training pair, unless the question
    is clear only with the turns before it (``needs_conversation``); a follow-up the bot read with the
    question before it (``Turn.context_text``) becomes one as it was read, that question first. An item
    about a knowledge-base example (``kb_intent``) that the crowd put where it is filed keeps it there
    (``keep_example``: the check stops listing it); one put elsewhere writes no pair for it, the check shows
    the verdict and the operator moves it.

    "None fits" (a topic the knowledge base lacks) writes the pairs as out of scope (``OUT_OF_SCOPE``): a
    retraining then learns to hand such questions to a person rather than answer them with a neighbouring
    intent's answer (``training.build.training_snapshot``, setting ``none_fits_out_of_scope``), until an
    operator makes an intent of them (``crowd_feedback.suggestions.adopt_suggestions`` deletes the pairs).
    Not for a question the knowledge base itself asked about (``kb_intent``) nor a check question."""
    split_off_rejected(session, item=item, policy=policy)
    if item.kb_intent is not None and label == item.kb_intent:
        try:
            keep_example(session, text=item.text, intent=label, actor=f"reviewers (item #{item.id})")
        except KnowledgeBaseFormatError:
            pass  # moved or removed since it was asked about: nothing to keep
    if label == NEW_INTENT and item.kb_intent is None and not item.is_gold:
        label = OUT_OF_SCOPE
    elif label not in known_intents:
        return 0
    alone_unclear = needs_conversation(session, item=item)
    rows = session.execute(
        select(Turn.user_text, Turn.context_text)
        .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
        .where(ReviewItemTurn.item_id == item.id)
    ).all()
    texts: list[str] = []
    for user_text, context_text in rows:
        question = item.shown_text(redact(user_text))
        # A clicked chip's "/intent" is no question (items routed before chips' thumbs-down went there).
        if CHIP_PAYLOAD.match(question):
            continue
        if context_text:  # a follow-up the bot read with the question before it: trained as it was read
            texts.append(in_context(redact(context_text), question))
        elif not alone_unclear:
            texts.append(question)
    unique = list(dict.fromkeys(texts))
    for text in unique:
        session.add(VerifiedPair(item_id=item.id, text=text, intent=label, weight=weight))
    _announce_dispute(session, item=item, label=label, texts=unique)
    return len(unique)


def replace_verified_pairs(
    session: Session,
    *,
    item: ReviewItem,
    label: str,
    weight: float,
    known_intents: Sequence[str],
    policy: ReviewPolicy,
) -> int:
    """The item's training pairs written anew for ``label`` (a settle or a re-aggregation changed it)."""
    session.execute(delete(VerifiedPair).where(VerifiedPair.item_id == item.id))
    return _write_verified_pairs(
        session, item=item, label=label, weight=weight, known_intents=known_intents, policy=policy
    )


def _announce_dispute(session: Session, *, item: ReviewItem, label: str, texts: Sequence[str]) -> None:
    """The crowd filed a question under ``label`` that the knowledge base has as an example of another
    intent: one of them is wrong, and training would learn both. Tell the operators (a
    ``knowledge.disputed`` ops event; the check lists it as an error)."""
    elsewhere = filed_elsewhere(session, texts=texts, intent=label)
    if not elsewhere:
        return
    text, kb_intent = elsewhere[0]
    more = f" (and {len(elsewhere) - 1} more)" if len(elsewhere) > 1 else ""
    filed = "found no intent for" if label == OUT_OF_SCOPE else "filed"
    under = "" if label == OUT_OF_SCOPE else f" under {label}"
    emit(
        session,
        "knowledge.disputed",
        f"Reviewers {filed} “{text[:200]}”{under} (item {item.id}); the knowledge base has it under "
        f"{kb_intent}{more}. One of them is wrong: check the knowledge base.",
        path="/operator/knowledge/check#conflicts",
        data={
            "item_id": item.id,
            "reviewers_intent": label,
            "questions": [{"text": t, "knowledge_base_intent": i} for t, i in elsewhere[:20]],
        },
    )


def item_shortlist(candidates: Sequence[dict[str, Any]] | None) -> list[tuple[str, float]]:
    """An item's stored candidates (the bot's, for its shown question) as [(intent, calibrated probability)],
    best first. The bot's out-of-scope class is what reviewers call "none fits" (it learns it from their
    answers: ``_write_verified_pairs``), so it weighs for that label."""
    return [
        (NEW_INTENT if c["intent"] == OUT_OF_SCOPE else str(c["intent"]), float(c.get("probability", 0.0)))
        for c in (candidates or [])
        if c.get("intent")
    ]


def _settled_by_people() -> Any:
    """Resolved real items whose label people settled on their own: two judgements on it, or an operator."""
    agreeing = (
        select(func.count())
        .select_from(Judgement)
        .where(Judgement.item_id == ReviewItem.id, Judgement.label == ReviewItem.resolved_label)
        .correlate(ReviewItem)
        .scalar_subquery()
    )
    return and_(
        ReviewItem.status == "resolved",
        ReviewItem.is_gold.is_(False),
        ReviewItem.resolved_label.is_not(None),
        (agreeing >= 2) | (ReviewItem.resolved_confidence >= 1.0),
    )


TRUST_EARNED_AFTER = 20  # resolved items after which the shortlist's measured trust counts half


def shortlist_trust(session: Session, *, known_intents: Sequence[str], limit: int = 500) -> float:
    """How far the bot's shortlist is trusted as the prior of an item's label: the exponent (0: not at all,
    1: its calibrated probabilities as they are) under which the shortlists of the latest resolved items best
    predicted their final labels, shrunk toward 0 while there are few (half after ``TRUST_EARNED_AFTER``).
    Trust is earned, as with reviewers: routed items are the hard ones, where the bot is often wrong. Only
    items the people settled without the shortlist count (two judgements on the final label, or an operator),
    so that the shortlist cannot earn trust from splits it decided itself."""
    from crowd_feedback.aggregation import TRUST_GRID, shortlist_distribution, tempered

    rows = session.execute(
        select(ReviewItem.candidates, ReviewItem.resolved_label)
        .where(_settled_by_people())
        .order_by(ReviewItem.id.desc())
        .limit(limit)
    ).all()
    labels = list(known_intents) + list(SPECIAL_LABELS)
    index = {label: i for i, label in enumerate(labels)}
    log_q, truth = [], []
    for candidates, resolved in rows:
        shortlist = item_shortlist(candidates)
        if resolved in index and any(label in index for label, _ in shortlist):
            log_q.append(shortlist_distribution(shortlist, index))
            truth.append(index[resolved])
    if not truth:
        return 0.0
    matrix, rows_index = np.vstack(log_q), np.arange(len(truth))
    best = max(TRUST_GRID, key=lambda trust: float(tempered(matrix, trust)[rows_index, truth].sum()))
    return best * len(truth) / (len(truth) + TRUST_EARNED_AFTER)


# ---------------------------------------------------------------------------- the customers' own choices

CUSTOMERS = "~customers"  # their voter's name in bulk aggregation (no account can be called this)
CUSTOMERS_AFTER_COMPLAINT = "~customers-wrong"  # the picks after "that's wrong": a voter of their own
PICK_TRUST_EARNED_AFTER = 20  # checked picks after which a pick counts half
MAX_PICK_LIFT = 0.98
PICK_BATCH = 500  # item ids per query (SQLite allows a limited number of bound parameters)


@dataclass(frozen=True)
class CustomerPick:
    """What the customers of an item's questions answered to "did you mean", or to their own "that's wrong"
    (the intents ranked next were offered): the choice most of them clicked (ties: the earliest), among the
    chips shown."""

    intent: str
    shown: tuple[str, ...]
    customers: int  # member turns that clicked a choice
    after_complaint: bool = False  # ``shown`` were offered after "that's wrong" (the first clicker's case)


def _picked_for(member: Any, after_complaint: bool | None = None) -> Any:
    """Join condition: the turn that holds a customer's choice about the member turn ``member`` (a column):
    the member itself ("did you mean"), or the typed "that's wrong" that rated it and offered choices;
    ``after_complaint`` True or False: only the one kind."""
    if after_complaint is None:
        return or_(Turn.id == member, Turn.rated_turn_id == member)
    if after_complaint:
        return Turn.rated_turn_id == member
    return and_(Turn.id == member, Turn.rated_turn_id.is_(None))


def customer_picks(
    session: Session, *, item_ids: Sequence[int], after_complaint: bool | None = None
) -> dict[int, CustomerPick]:
    """Per item, the customers' choice after the bot asked "did you mean", or after they said "that's wrong"
    to its answer and were offered the intents ranked next (``core.registry.record_choice``); items whose
    customers clicked nothing are absent. ``after_complaint`` True or False: the picks of that kind only
    (the two kinds earn their trust apart, ``pick_trust``)."""
    ids = list(item_ids)
    chosen: dict[int, list[Turn]] = {}
    # "Did you mean" picks are joined on the member's own id alone and told from complaint picks here: with
    # ``rated_turn_id IS NULL`` in the join, SQLite's planner read the turns through that column's index
    # (every turn that rated nothing, the whole log) for a batch of items, 2 s on 600,000 turns, instead of
    # looking each member up by its key (1 ms).
    if after_complaint is False:
        condition = Turn.id == ReviewItemTurn.turn_id
    else:
        condition = _picked_for(ReviewItemTurn.turn_id, after_complaint)
    for start in range(0, len(ids), PICK_BATCH):  # bulk re-aggregation asks for every judged item
        rows = session.execute(
            select(ReviewItemTurn.item_id, Turn)
            .join(Turn, condition)
            .options(
                load_only(
                    Turn.id,
                    Turn.status,
                    Turn.suggested,
                    Turn.candidates,
                    Turn.chosen_intent,
                    Turn.rated_turn_id,
                )
            )
            .where(
                ReviewItemTurn.item_id.in_(ids[start : start + PICK_BATCH]), Turn.chosen_intent.is_not(None)
            )
            .order_by(Turn.id)
        ).all()
        for item_id, turn in rows:
            if after_complaint is False and turn.rated_turn_id is not None:
                continue  # a "that's wrong" member: its own pick is a complaint pick
            chosen.setdefault(int(item_id), []).append(turn)
    picks = {}
    for item_id, turns in chosen.items():
        counts: dict[str, int] = {}
        for turn in turns:
            counts[str(turn.chosen_intent)] = counts.get(str(turn.chosen_intent), 0) + 1
        intent = max(counts, key=lambda name: counts[name])  # first maximum: the earliest of a tie
        first = next(t for t in turns if t.chosen_intent == intent)
        picks[item_id] = CustomerPick(
            intent,
            tuple(shown_suggestions(first)),
            len(turns),
            after_complaint=first.rated_turn_id is not None,
        )
    return picks


@dataclass(frozen=True)
class PickTrust:
    """How often the customers' choice was the label people settled on, among the items whose label was one of
    the choices shown (a customer cannot click a choice that was not offered), and how much better that is
    than clicking at random (``chance``: the agreements random clicks would have had, the sum of 1/m)."""

    checked: int
    agreed: int
    chance: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return self.agreed / self.checked if self.checked else None

    @property
    def lift(self) -> float | None:
        """Chance-corrected accuracy (as Cohen's kappa corrects agreement): 0 for clicks no better than random
        whatever the number of choices, 1 for always right; held in [0, 0.98]."""
        if self.checked == 0 or self.checked <= self.chance:
            return None if self.checked == 0 else 0.0
        return min(max((self.agreed - self.chance) / (self.checked - self.chance), 0.0), MAX_PICK_LIFT)

    @property
    def weight(self) -> float:
        """How much a pick counts in a posterior: 0 until picks have been checked, half after
        ``PICK_TRUST_EARNED_AFTER`` (trust is earned, as with the shortlist and with reviewers)."""
        return self.checked / (self.checked + PICK_TRUST_EARNED_AFTER)


def pick_trust(session: Session, *, after_complaint: bool = False, limit: int = 500) -> PickTrust:
    """Measured on the latest ``limit`` items people settled that had a customer's choice of the kind asked
    for: after "did you mean" (default), or after "that's wrong" (``after_complaint``). The kinds are measured
    apart: a customer who has just called the answer wrong chooses among other intents than one the bot asked,
    and a kind earns its trust only from its own record. Only people's decisions count, so that picks cannot
    earn trust from resolutions they tipped themselves."""
    rows = session.execute(
        select(ReviewItem.id, ReviewItem.resolved_label)
        .where(
            _settled_by_people(),
            exists().where(
                ReviewItemTurn.item_id == ReviewItem.id,
                _picked_for(ReviewItemTurn.turn_id, after_complaint),
                Turn.chosen_intent.is_not(None),
            ),
        )
        .order_by(ReviewItem.id.desc())
        .limit(limit)
    ).all()
    picks = customer_picks(
        session, item_ids=[item_id for item_id, _ in rows], after_complaint=after_complaint
    )
    checked = agreed = 0
    chance = 0.0
    for item_id, label in rows:
        pick = picks.get(int(item_id))
        if pick is not None and label in pick.shown:
            checked += 1
            agreed += int(pick.intent == label)
            chance += 1.0 / max(len(pick.shown), 1)
    return PickTrust(checked=checked, agreed=agreed, chance=chance)


def pick_log_likelihood(pick: CustomerPick, labels: Sequence[str], lift: float) -> np.ndarray:
    """log P(the customers clicked ``pick.intent`` | the label is y), for every label y. When y was one of the
    m choices shown, they know it with probability ``lift`` and click it, and click at random otherwise: y
    with 1/m + lift (1 - 1/m), each other choice with (1 - lift) / m. When y was not offered, any of the m is
    as likely (1/m). ``lift`` 0 (clicks no better than random) leaves the posterior as it is."""
    m = max(len(pick.shown), 2)
    lift = min(max(lift, 0.0), MAX_PICK_LIFT)
    shown = set(pick.shown)
    out = np.full(len(labels), math.log(1.0 / m))
    for i, label in enumerate(labels):
        if label == pick.intent:
            out[i] = math.log(1.0 / m + lift * (1.0 - 1.0 / m))
        elif label in shown:
            out[i] = math.log((1.0 - lift) / m)
    return out


def item_posterior(
    session: Session, *, item: ReviewItem, known_intents: Sequence[str], policy: ReviewPolicy
) -> dict[str, float]:
    """One-coin posterior over labels: each reviewer is right with their gold-measured weight, wrong
    uniformly otherwise; suspended reviewers count as coin flips. With ``policy.model_voter`` the bot's
    shortlist for the item is its prior, raised to the trust the shortlist earned on resolved items
    (``shortlist_trust``). It weighs between the labels people chose and never brings one of its own (a label
    nobody chose is held at the shortlist's floor), and it never counts on gold items (whose purpose is to
    measure the people). The customers' own choice after "did you mean" (``customer_picks``), and after
    "that's wrong", count the same way, each kind as far as its picks earned trust on items people settled
    (``pick_trust``); reviewers never see them."""
    from crowd_feedback.aggregation import shortlist_distribution, tempered

    labels = list(known_intents) + list(SPECIAL_LABELS)
    k = len(labels)
    log_post = np.zeros(k)
    index = {label: i for i, label in enumerate(labels)}
    rows = session.execute(
        select(Judgement.label, User)
        .join(User, User.id == Judgement.reviewer_id)
        .where(Judgement.item_id == item.id)
    ).all()
    for label, reviewer in rows:
        weight = 1.0 / k if reviewer.suspended_at is not None else reviewer_weight(reviewer, policy)
        accuracy = min(max(weight, 1.0 / k), 0.999)
        log_post += math.log((1.0 - accuracy) / (k - 1))
        if label in index:
            log_post[index[label]] += math.log(accuracy) - math.log((1.0 - accuracy) / (k - 1))
    shortlist = item_shortlist(item.candidates)
    if policy.model_voter and not item.is_gold and rows and any(label in index for label, _ in shortlist):
        log_q = shortlist_distribution(shortlist, index, chosen=[label for label, _ in rows])
        trust = shortlist_trust(session, known_intents=known_intents)
        log_post += tempered(log_q[None, :], trust)[0]
    for after_complaint in (False, True) if rows and not item.is_gold else ():
        pick = customer_picks(session, item_ids=[item.id], after_complaint=after_complaint).get(item.id)
        if pick is not None:
            measured = pick_trust(session, after_complaint=after_complaint)
            if measured.lift:
                log_post += measured.weight * pick_log_likelihood(pick, labels, measured.lift)
    posterior = np.exp(log_post - log_post.max())
    posterior /= posterior.sum()
    return {label: float(posterior[i]) for i, label in enumerate(labels)}


def resolve_item(
    session: Session,
    *,
    item: ReviewItem,
    known_intents: Sequence[str],
    policy: ReviewPolicy,
    now: datetime | None = None,
) -> ReviewItem:
    """Dynamic redundancy: resolve early when confident; ask for more judgements (up to the maximum) when
    reviewers disagree; escalate to an operator when still unresolved."""
    now = now or utcnow()
    count = (
        session.scalar(select(func.count()).select_from(Judgement).where(Judgement.item_id == item.id)) or 0
    )
    if count == 0:
        return item
    posterior = item_posterior(session, item=item, known_intents=known_intents, policy=policy)
    label, confidence = max(posterior.items(), key=lambda kv: kv[1])
    if confidence >= policy.posterior_threshold and count >= min(2, item.required_judgements):
        item.status = "resolved"
        item.resolved_label, item.resolved_confidence, item.resolved_at = label, confidence, now
        session.execute(delete(Claim).where(Claim.item_id == item.id))
        _write_verified_pairs(
            session, item=item, label=label, weight=confidence, known_intents=known_intents, policy=policy
        )
    elif count >= item.required_judgements:
        if item.required_judgements < policy.max_judgements:
            item.required_judgements += 1
        else:
            item.status = "escalated"
            item.resolved_label, item.resolved_confidence = label, confidence
            session.flush()
            emit(
                session,
                "item.escalated",
                f"Review item {item.id} needs an operator: after {count} judgements no label reached "
                f"{policy.posterior_threshold:.0%} (leading: {label}, {confidence:.0%}). "
                f"Question: “{item.text[:200]}”",
                path=f"/review/items/{item.id}",
                data={
                    "item_id": item.id,
                    "judgements": count,
                    "leading_label": label,
                    "confidence": confidence,
                    "cluster_size": item.cluster_size,
                },
            )
    session.flush()
    return item


def reviewer_stats(session: Session, *, reviewer: User) -> dict[str, Any]:
    done = session.scalar(
        select(func.count()).select_from(Judgement).where(Judgement.reviewer_id == reviewer.id)
    )
    agreed = session.scalar(
        select(func.count())
        .select_from(Judgement)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(
            Judgement.reviewer_id == reviewer.id,
            ReviewItem.status == "resolved",
            ReviewItem.resolved_label == Judgement.label,
        )
    )
    resolved = session.scalar(
        select(func.count())
        .select_from(Judgement)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(Judgement.reviewer_id == reviewer.id, ReviewItem.status == "resolved")
    )
    seconds = [
        float(s or 0.0)
        for s in session.scalars(
            select(Judgement.seconds).where(
                Judgement.reviewer_id == reviewer.id, Judgement.seconds.is_not(None)
            )
        )
    ]
    return {
        "judgements": int(done or 0),
        "median_seconds": float(np.median(seconds)) if seconds else None,
        "gold_answered": reviewer.gold_answered,
        "gold_accuracy": reviewer.gold_correct / reviewer.gold_answered if reviewer.gold_answered else None,
        "agreement_with_consensus": (agreed or 0) / resolved if resolved else None,
        "suspended": reviewer.suspended_at is not None,
    }


def judgement_answers(
    session: Session, *, since: datetime | None = None, latest: int | None = None
) -> list[Any]:
    """All judgements on real (non-gold) items as aggregation answers (item id, reviewer, label);
    ``latest``: only the newest that many judged items' judgements (a bounded read for a page)."""
    from crowd_feedback.aggregation import Answer

    query = (
        select(Judgement.item_id, User.username, Judgement.label)
        .join(User, User.id == Judgement.reviewer_id)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(ReviewItem.is_gold.is_(False))
    )
    if since is not None:
        query = query.where(Judgement.created_at >= since)
    if latest is not None:  # whole items, so that no item keeps only some of its judgements
        newest = (
            select(Judgement.item_id)
            .join(ReviewItem, ReviewItem.id == Judgement.item_id)
            .where(ReviewItem.is_gold.is_(False))
            .group_by(Judgement.item_id)
            .order_by(Judgement.item_id.desc())
            .limit(latest)
        )
        query = query.where(Judgement.item_id.in_(newest))
    return [Answer(str(item), reviewer, label) for item, reviewer, label in session.execute(query)]


@dataclass(frozen=True)
class BatchAgreement:
    """Agreement within one batch: the real items that came in during one UTC week (Monday first)."""

    week: datetime
    items: int  # items of the batch with two or more judgements (the ones alpha reads)
    judgements: int
    alpha: float | None  # None when undefined (fewer than two pairable judgements, or one label only)


def weekly_agreement(
    session: Session, *, weeks: int = 8, now: datetime | None = None
) -> list[BatchAgreement]:
    """Krippendorff's alpha per batch of review items, a batch being the items routed in one UTC week, for
    the last ``weeks`` weeks (newest first; weeks without judgements left out): does a week's traffic, or the
    reviewers on it, agree less than the others?"""
    from crowd_feedback.aggregation import Answer
    from crowd_feedback.agreement import krippendorff_alpha

    def week_of(moment: datetime) -> datetime:  # Monday 00:00 UTC, whatever the connection's time zone
        moment = as_utc(moment).astimezone(UTC)
        return (moment - timedelta(days=moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)

    start = week_of(now or utcnow()) - timedelta(weeks=weeks - 1)
    rows = session.execute(
        select(Judgement.item_id, User.username, Judgement.label, ReviewItem.created_at)
        .join(User, User.id == Judgement.reviewer_id)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(ReviewItem.is_gold.is_(False), ReviewItem.created_at >= start)
    ).all()
    by_week: dict[datetime, list[Any]] = {}
    for item, reviewer, label, created in rows:
        by_week.setdefault(week_of(created), []).append(Answer(str(item), reviewer, label))
    batches = []
    for week, answers in sorted(by_week.items(), reverse=True):
        per_item = Counter(a.item for a in answers)
        alpha = krippendorff_alpha(answers)
        batches.append(
            BatchAgreement(
                week=week,
                items=sum(1 for n in per_item.values() if n >= 2),
                judgements=len(answers),
                alpha=None if math.isnan(alpha) else alpha,
            )
        )
    return batches


def reaggregate(
    session: Session,
    *,
    method: str,
    known_intents: Sequence[str],
    policy: ReviewPolicy,
    report: Any = None,
) -> dict[str, int]:
    """Recompute every judged item's label with a named strategy over all judgements at once (reviewer
    quality estimated jointly), then bring resolutions and verified pairs in line. The customers' choices
    after "did you mean" join as one more voter (``CUSTOMERS``), and those after "that's wrong" as another
    (``CUSTOMERS_AFTER_COMPLAINT``), whose reliability EM measures like a reviewer's. Idempotent."""
    from crowd_feedback.aggregation import Shortlists, get_strategy, with_model_votes

    answers = judgement_answers(session)
    if not answers:
        return {"items": 0, "changed": 0, "resolved": 0, "pairs": 0}
    judged_ids = sorted({int(a.item) for a in answers})
    for after_complaint, voter in ((False, CUSTOMERS), (True, CUSTOMERS_AFTER_COMPLAINT)):
        picks = customer_picks(session, item_ids=judged_ids, after_complaint=after_complaint)
        answers = with_model_votes(
            answers, {str(item_id): pick.intent for item_id, pick in picks.items()}, worker=voter
        )
    shortlists: Shortlists | None = None
    if policy.model_voter:  # the bot's shortlist as each item's prior; EM fits how far to trust it
        judged = {a.item for a in answers}
        shortlists = {
            str(item_id): item_shortlist(candidates)
            for item_id, candidates in session.execute(
                select(ReviewItem.id, ReviewItem.candidates).where(ReviewItem.is_gold.is_(False))
            )
            if str(item_id) in judged and candidates
        }
    labels = sorted(set(known_intents) | set(SPECIAL_LABELS) | {a.label for a in answers})
    gold = {
        str(item.id): item.gold_label
        for item in session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True)))
        if item.gold_label
    }
    result = get_strategy(method).aggregate(answers, classes=labels, gold=gold, shortlists=shortlists)
    inferred, confidences = result.labels(), result.confidences()
    changed = resolved = pairs = 0
    for position, item_key in enumerate(result.items):
        if report is not None and position % 200 == 0:
            report(position / max(len(result.items), 1), "re-aggregating")
        item = session.get(ReviewItem, int(item_key))
        # Escalated items wait for an operator; settled ones were decided by one.
        if item is None or item.is_gold or item.status == "escalated" or item.settled_by is not None:
            continue
        label, confidence = inferred[item_key], confidences[item_key]
        count = (
            session.scalar(select(func.count()).select_from(Judgement).where(Judgement.item_id == item.id))
            or 0
        )
        if confidence < policy.posterior_threshold or count < 2:
            continue
        if item.status == "resolved" and item.resolved_label == label:
            item.resolved_confidence = confidence
            if label == NEW_INTENT and not _has_pairs(session, item.id):
                # Resolved "none fits" before such questions were written as out-of-scope pairs: write them.
                locked = locked_item(session, item.id)
                if locked is not None and locked.settled_by is None and locked.resolved_label == label:
                    pairs += replace_verified_pairs(
                        session,
                        item=locked,
                        label=label,
                        weight=confidence,
                        known_intents=known_intents,
                        policy=policy,
                    )
            continue
        # Read again under the lock: a reviewer's answer or an operator may have settled it meanwhile.
        item = locked_item(session, item.id)
        if item is None or item.status == "escalated" or item.settled_by is not None:
            continue
        changed += int(item.status == "resolved")
        item.status, item.resolved_label, item.resolved_confidence = "resolved", label, confidence
        item.resolved_at = item.resolved_at or utcnow()
        resolved += 1
        pairs += replace_verified_pairs(
            session, item=item, label=label, weight=confidence, known_intents=known_intents, policy=policy
        )
    session.flush()
    return {"items": len(result.items), "changed": changed, "resolved": resolved, "pairs": pairs}


def _has_pairs(session: Session, item_id: int) -> bool:
    return session.scalar(select(VerifiedPair.id).where(VerifiedPair.item_id == item_id).limit(1)) is not None


def mark_settled(session: Session, *, item: ReviewItem, actor: str, now: datetime) -> None:
    """Record that a person decided ``item`` (bulk re-aggregation leaves it alone) and end its leases."""
    item.settled_by, item.settled_at = actor[:80], now
    session.execute(delete(Claim).where(Claim.item_id == item.id))


def operator_resolve(
    session: Session,
    *,
    item_id: int,
    label: str,
    known_intents: Sequence[str],
    operator: User,
    policy: ReviewPolicy,
    now: datetime | None = None,
) -> ReviewItem:
    """An operator settles an item (typically an escalated one): the label counts as verified (weight 1)."""
    if operator.role != "operator":
        raise ReviewError("only operators can settle items")
    if label not in known_intents and label not in SPECIAL_LABELS:
        raise ReviewError(f"unknown intent {label!r}")
    item = locked_item(session, item_id)
    if item is None or item.is_gold:
        raise ReviewError("no such review item")
    now = now or utcnow()
    item.status, item.resolved_label, item.resolved_confidence, item.resolved_at = "resolved", label, 1.0, now
    mark_settled(session, item=item, actor=operator.username, now=now)
    replace_verified_pairs(
        session, item=item, label=label, weight=1.0, known_intents=known_intents, policy=policy
    )
    session.flush()
    return item


MAX_BULK_SETTLE = 500
ITEM_STATUSES = ("pending", "resolved", "escalated")


def find_items(
    session: Session,
    *,
    status: str,
    text: str = "",
    reason: str = "",
    bot_intent: str = "",
    reported: bool = False,
    limit: int = 200,
    offset: int = 0,
) -> tuple[list[ReviewItem], int]:
    """Real (non-gold) items in ``status``, most urgent first, narrowed by words in the question, a routing
    reason, the intent the bot gave and (``reported``) a reviewer's report of personal data waiting for an
    operator: (``limit`` of them from ``offset``, how many match)."""
    if status not in ITEM_STATUSES:
        raise ReviewError(f"status must be one of {', '.join(ITEM_STATUSES)}")
    if reason and reason not in REASONS:
        raise ReviewError(f"reason must be one of {', '.join(REASONS)}")
    where = [ReviewItem.status == status, ReviewItem.is_gold.is_(False)]
    if text.strip():
        where.append(ReviewItem.text.icontains(" ".join(text.split()), autoescape=True))
    if reason:
        # The reasons are a JSON list: its text holds each one quoted, on SQLite and PostgreSQL alike.
        where.append(cast(ReviewItem.reasons, String).contains(f'"{reason}"'))
    if bot_intent:
        where.append(ReviewItem.bot_intent == bot_intent)
    if reported:
        where.append(ReviewItem.privacy_reported_at.is_not(None))
    total = session.scalar(select(func.count()).select_from(ReviewItem).where(*where))
    rows = session.scalars(
        select(ReviewItem)
        .options(defer(ReviewItem.embedding))  # a list has no use for the vectors (768 floats each, mpnet)
        .where(*where)
        .order_by(ReviewItem.queue_key.desc(), ReviewItem.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)


def judgement_counts(session: Session, *, item_ids: Sequence[int]) -> dict[int, int]:
    """How many judgements each item has (items with none are left out), in one query."""
    if not item_ids:
        return {}
    rows = session.execute(
        select(Judgement.item_id, func.count())
        .where(Judgement.item_id.in_(list(item_ids)))
        .group_by(Judgement.item_id)
    ).all()
    return {int(item_id): int(count) for item_id, count in rows}


def operator_resolve_many(
    session: Session,
    *,
    item_ids: Sequence[int],
    label: str,
    known_intents: Sequence[str],
    operator: User,
    policy: ReviewPolicy,
    now: datetime | None = None,
) -> list[ReviewItem]:
    """Settle several items with one label (spam floods, a run of questions an operator recognises): each as
    ``operator_resolve`` settles one. All or nothing: the first refusal raises, and the caller rolls back."""
    ids = list(dict.fromkeys(int(i) for i in item_ids))
    if not ids:
        raise ReviewError("tick at least one item")
    if len(ids) > MAX_BULK_SETTLE:
        raise ReviewError(f"at most {MAX_BULK_SETTLE} items at once, not {len(ids)}")
    now = now or utcnow()
    settled = []
    for item_id in ids:
        try:
            settled.append(
                operator_resolve(
                    session,
                    item_id=item_id,
                    label=label,
                    known_intents=known_intents,
                    operator=operator,
                    policy=policy,
                    now=now,
                )
            )
        except ReviewError as exc:
            raise ReviewError(f"item {item_id}: {exc}") from exc
    return settled


def shadow_agreement(session: Session, *, limit: int = 5000) -> dict[str, Any] | None:
    """How often the shadow model's top intent matched what production answered, on recent shadowed turns."""
    rows = session.execute(
        select(Turn.shadow_prediction, Turn.candidates)
        .where(Turn.shadow_prediction.is_not(None))
        .order_by(Turn.id.desc())
        .limit(limit)
    ).all()
    versions: dict[str, list[bool]] = {}
    for shadow, candidates in rows:
        if not shadow:  # a JSON null (the JSON type stores None as 'null', which IS NOT NULL lets through)
            continue
        production_top = candidates[0]["intent"] if candidates else None
        versions.setdefault(shadow["model_version"], []).append(shadow.get("top_intent") == production_top)
    return {
        version: {"turns": len(hits), "agreement": sum(hits) / len(hits)}
        for version, hits in versions.items()
    }
