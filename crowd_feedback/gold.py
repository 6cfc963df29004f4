"""Check questions (gold items): where they come from, how they are doing, and retiring a bad one.

Gold measures reviewers, so a wrong gold label does harm twice: it lowers good reviewers' weight and can
suspend them. ``gold_report`` shows, per gold item, how many reviewers answered it and how many matched; an
item most answer otherwise (``contested``) is the one to look at first: its label may be wrong, or the
question may fit two intents. ``retire_gold`` takes it out of the queue and out of every reviewer's gold
record (those counted since their last reinstatement), so nobody stays penalised by a bad key.

New gold comes from the knowledge base's own examples (``add_gold_from_knowledge_base``) or from an item the
crowd or an operator resolved (``gold_from_item``: operator-verified).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.engine import ANSWERED, AnsweringEngine, BundleError, Prediction
from core.knowledge_base import load_knowledge_base
from core.models import AccountEvent, Judgement, ReviewItem, User, as_utc
from crowd_feedback.review import (
    NEW_INTENT,
    ReviewPolicy,
    add_gold_item,
    is_contested,
)
from crowd_feedback.reviewers import count_gold

RETIRED = "retired"
log = logging.getLogger("helploop.crowd_feedback.gold")


class GoldError(ValueError):
    pass


@dataclass(frozen=True)
class GoldRow:
    item_id: int
    text: str
    label: str
    answered: int
    right: int
    top_wrong: str | None  # the answer most given instead of the key
    top_wrong_count: int

    @property
    def share_right(self) -> float | None:
        return self.right / self.answered if self.answered else None

    @property
    def contested(self) -> bool:
        """Enough answers, and most of them differ from the key: look at the key."""
        return is_contested(self.answered, self.right)


def gold_report(session: Session) -> list[GoldRow]:
    """Every active gold item with its answers, contested ones first, then the least matched."""
    items = list(
        session.scalars(
            select(ReviewItem).where(ReviewItem.is_gold.is_(True), ReviewItem.status == "pending")
        )
    )
    answers: dict[int, Counter[str]] = {item.id: Counter() for item in items}
    if items:
        rows = session.execute(
            select(Judgement.item_id, Judgement.label, func.count())
            .where(Judgement.item_id.in_(list(answers)))
            .group_by(Judgement.item_id, Judgement.label)
        )
        for item_id, label, count in rows:
            answers[item_id][label] = int(count)
    report = []
    for item in items:
        counts = answers[item.id]
        key = item.gold_label or ""
        wrong = [(label, n) for label, n in counts.most_common() if label != key]
        report.append(
            GoldRow(
                item_id=item.id,
                text=item.text,
                label=key,
                answered=sum(counts.values()),
                right=counts.get(key, 0),
                top_wrong=wrong[0][0] if wrong else None,
                top_wrong_count=wrong[0][1] if wrong else 0,
            )
        )
    return sorted(
        report,
        key=lambda r: (not r.contested, r.share_right if r.share_right is not None else 2.0, r.item_id),
    )


@dataclass(frozen=True)
class BotView:
    """What the bot would have said to a question it was not trained on, as a review item shows it: the
    intent, the reply the customer would have read, the confidence and the candidates (best first)."""

    intent: str | None
    answer: str
    confidence: float
    candidates: list[dict[str, Any]]
    # The router would have sent the turn to review: the bot would not have answered (it asked "did you mean"
    # or handed over), or its members disagree on the intent.
    routed: bool = False


def bot_view_of(prediction: Prediction, **replies: str) -> BotView:
    """A prediction as a review item shows it (as a routed turn logs it): intent, reply, confidence, top 5.
    ``replies``: the lines shown instead of an answer (``Prediction.reply``'s, as ``Settings.replies``)."""
    return BotView(
        intent=prediction.intent or prediction.top_intent,
        answer=prediction.reply(**replies),
        confidence=prediction.confidence,
        candidates=[c.to_dict() for c in prediction.ranking[:5]],
        routed=prediction.status != ANSWERED or prediction.members_disagree,
    )


def held_out_views(engine: AnsweringEngine, **replies: str) -> Callable[[str], BotView | None]:
    """The bot's view of knowledge-base examples the model was calibrated on, each from members that had
    not seen it (``AnsweringEngine.held_out_prediction``); None for an example it has no such row of."""

    def view(text: str) -> BotView | None:
        prediction = engine.held_out_prediction(text)
        if prediction is None:
            return None
        return bot_view_of(prediction, **replies)

    return view


def production_views(
    engine: AnsweringEngine | None, **replies: str
) -> Callable[[str], BotView | None] | None:
    """``held_out_views`` of the model in production, for ``add_gold_from_knowledge_base``; None when there
    is no model, or it kept no held-out rows (or they cannot be read: logged), so examples are drawn at
    random."""
    if engine is None:
        return None
    try:
        if engine.held_out is None:
            return None
    except BundleError as exc:
        log.warning("drawing check questions at random: %s", exc)
        return None
    return held_out_views(engine, **replies)


MIN_DOUBT = 0.02  # an example the bot is sure of can still be drawn, rarely


def _draw_by_doubt(
    viewed: list[tuple[str, BotView]], n: int, rng: random.Random
) -> list[tuple[str, BotView]]:
    """``n`` of them without replacement, each with probability in proportion to the bot's doubt (1 − its
    confidence), as traffic reaches review (Efraimidis–Spirakis keys: u^(1/w), largest first)."""
    keyed = sorted(
        (
            (rng.random() ** (1.0 / max(1.0 - view.confidence, MIN_DOUBT)), text, view)
            for text, view in viewed
        ),
        key=lambda k: k[0],
        reverse=True,
    )
    return [(text, view) for _, text, view in keyed[:n]]


def add_gold_from_knowledge_base(
    session: Session,
    *,
    per_intent: int,
    policy: ReviewPolicy,
    seed: int = 0,
    bot_view: Callable[[str], BotView | None] | None = None,
) -> int:
    """``per_intent`` examples of each intent (never one already gold) become gold items, drawn at random.

    With ``bot_view`` (``held_out_views`` of the model in production), they are drawn as traffic reaches
    review: first among the examples the router would have sent there had the bot, not trained on them, seen
    them as traffic (it would have asked "did you mean" or handed over, or its members disagree), then in
    proportion to its doubt (1 − confidence), always among those
    whose key is one of its candidates (a key the model cannot place at all is likelier a wrong label than a
    hard question). Each item carries that view: its suggestions are those of a model that never saw the
    question, not one recalling its own training row, so a check question is as hard as the real items it
    hides among. An intent with no example seen that way is drawn at random, and its bot view is computed
    when it is shown."""
    if not 1 <= per_intent <= 50:
        raise GoldError(f"per_intent must be 1 to 50, not {per_intent}")
    kb = load_knowledge_base(session)
    if not kb.intents:
        raise GoldError("the knowledge base is empty")
    existing = set(session.scalars(select(ReviewItem.text).where(ReviewItem.is_gold.is_(True))))
    rng = random.Random(seed)
    added = 0
    for name, intent in sorted(kb.intents.items()):
        if name == "oos":
            continue
        fresh = [text for text in intent.examples if text not in existing]
        viewed: list[tuple[str, BotView]] = []
        if bot_view is not None:
            for text in fresh:
                view = bot_view(text)
                if view is not None and any(c.get("intent") == name for c in view.candidates):
                    viewed.append((text, view))
        chosen: list[tuple[str, BotView | None]]
        if viewed:
            routed = _draw_by_doubt([(t, v) for t, v in viewed if v.routed], per_intent, rng)
            rest = [(t, v) for t, v in viewed if not v.routed]
            chosen = [*routed, *_draw_by_doubt(rest, per_intent - len(routed), rng)]
        else:
            chosen = [(text, None) for text in rng.sample(fresh, min(per_intent, len(fresh)))]
        for text, view in chosen:
            item = add_gold_item(session, text=text, label=name, policy=policy)
            if view is not None:
                item.bot_intent, item.bot_answer, item.bot_confidence = (
                    view.intent,
                    view.answer,
                    view.confidence,
                )
                item.candidates = list(view.candidates)
            added += 1
    session.flush()
    return added


def gold_from_item(session: Session, *, item_id: int, policy: ReviewPolicy) -> ReviewItem:
    """A resolved item's question, with the label it resolved to (by the crowd's posterior or an operator),
    as a new gold item; the item itself stays as it is."""
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise GoldError(f"review item {item_id} does not exist")
    if item.is_gold:
        raise GoldError(f"item {item_id} is a check question already")
    if item.status != "resolved" or not item.resolved_label:
        raise GoldError(f"item {item_id} is not resolved: only a settled label can be a key")
    if item.resolved_label == NEW_INTENT:
        raise GoldError("a new-intent suggestion cannot be a key")
    duplicate = session.scalar(
        select(ReviewItem.id).where(
            ReviewItem.is_gold.is_(True), ReviewItem.status == "pending", ReviewItem.text == item.text
        )
    )
    if duplicate is not None:
        raise GoldError(f"the same question is check question {duplicate} already")
    gold = add_gold_item(session, text=item.text, label=item.resolved_label, policy=policy)
    # What the bot made of it, as reviewers saw it: a check question must look like any other item.
    gold.bot_intent, gold.bot_answer = item.bot_intent, item.bot_answer
    gold.bot_confidence, gold.candidates = item.bot_confidence, list(item.candidates or [])
    gold.context = [dict(turn) for turn in item.context] if item.context else None
    session.flush()
    return gold


def retire_gold(session: Session, *, item_id: int) -> int:
    """Take a gold item out of the queue and out of the gold record of every reviewer who answered it (only
    answers given since that reviewer's last reinstatement count there). Returns how many records changed."""
    item = session.get(ReviewItem, item_id)
    if item is None or not item.is_gold:
        raise GoldError(f"check question {item_id} does not exist")
    if item.status == RETIRED:
        raise GoldError(f"check question {item_id} is retired already")
    item.status = RETIRED
    changed = 0
    for judgement in session.scalars(select(Judgement).where(Judgement.item_id == item.id)):
        reviewer = session.get(User, judgement.reviewer_id)
        if reviewer is None:
            continue
        reset = session.scalar(
            select(func.max(AccountEvent.created_at)).where(
                AccountEvent.user_id == reviewer.id, AccountEvent.action == "reinstated"
            )
        )
        if reset is not None and as_utc(judgement.created_at) <= as_utc(reset):
            continue  # counted before the reinstatement, which started the record again
        count_gold(session, reviewer=reviewer, answered=-1, correct=-int(judgement.label == item.gold_label))
        changed += 1
    session.flush()
    return changed
