"""How good the bot's answers are, measured from its own traffic.

- **Precision, without bias**: a random share of confidently answered turns (``ReviewPolicy.audit_rate``) is
  sent to review whatever the bot's confidence; among those the reviewers resolved, the share whose label is
  the intent the bot answered is an unbiased estimate of the precision of answered turns (a Wilson interval
  says how sure it is). Routed-because-unsure turns would bias it, so only audited turns count.
- **Per intent**: how often it was answered, the thumbs-down rate of its rated answers, its audited
  precision, and what reviewers said of the answer text itself ("was the bot's answer acceptable?"), so an
  operator can tell a wrong classification from a poor answer.
- **Answers kept out by a page's metadata**: questions the bot would have answered, asked on a page whose
  metadata filter left that answer out (a tag missing from the intent, or a page that asks for too little).
- **Labels reviewers mix up**: on questions whose label is settled (a resolved item, or a check question's
  key), which other label reviewers gave, and how often: where a note on the intent, or a line in the
  guidelines, would save the crowd's time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn
from core.registry import (
    AskedAgain,
    ChoiceSet,
    ClarifyChoices,
    Correction,
    DayTraffic,
    Satisfaction,
    TeamResponse,
    asked_again,
    choice_sets,
    clarify_choices,
    complaint_choices,
    corrections,
    daily_traffic,
    other_languages,
    satisfaction,
    team_response,
)
from core.team_hours import TeamHours
from crowd_feedback.gold import RETIRED
from crowd_feedback.review import PickTrust, pick_trust
from crowd_feedback.workforce import Workforce, workforce


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sensible at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class IntentQuality:
    intent: str
    answered: int = 0
    rated: int = 0  # answered turns with a thumbs up or down
    unhelpful: int = 0
    asked_again: int = 0  # answered turns that gave the conversation's last answer again (bot.repetition)
    audited: int = 0  # audited turns whose item is resolved
    audited_correct: int = 0
    answer_votes: int = 0  # reviewers' verdicts on the answer text shown for this intent
    answer_acceptable: int = 0

    @property
    def unhelpful_rate(self) -> float | None:
        return self.unhelpful / self.rated if self.rated else None

    @property
    def precision(self) -> float | None:
        return self.audited_correct / self.audited if self.audited else None

    @property
    def acceptable_rate(self) -> float | None:
        return self.answer_acceptable / self.answer_votes if self.answer_votes else None


@dataclass
class QualityReport:
    audited: int
    audited_correct: int
    audits_pending: int
    intents: dict[str, IntentQuality] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return self.audited_correct / self.audited if self.audited else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.audited_correct, self.audited)


def answer_quality(session: Session, *, since: datetime | None = None) -> QualityReport:
    """Audited precision overall and per intent, with thumbs-down and reviewers' answer verdicts per intent,
    over turns logged since ``since`` (all when None), and the answers customers asked for again right after
    (bot.repetition). Four queries."""
    recent = [Turn.created_at >= since] if since is not None else []
    intents: dict[str, IntentQuality] = {}

    def row(intent: str) -> IntentQuality:
        return intents.setdefault(intent, IntentQuality(intent))

    answered = session.execute(
        select(
            Turn.intent,
            func.count(),
            func.sum(case((Turn.helpful.is_not(None), 1), else_=0)),
            func.sum(case((Turn.helpful.is_(False), 1), else_=0)),
        )
        .where(Turn.status == "answered", Turn.intent.is_not(None), *recent)
        .group_by(Turn.intent)
    ).all()
    for intent, count, rated, unhelpful in answered:
        quality = row(intent)
        quality.answered, quality.rated, quality.unhelpful = int(count), int(rated or 0), int(unhelpful or 0)
    # Answers given again (a few in a hundred): from their own partial index by time, apart from the query
    # above, which reads the figures index alone. Only answered turns that asked again have an intent (a
    # conversation passed on instead has none): no status to compare, which would lead SQLite's planner to
    # walk the period's answered turns.
    again = session.execute(
        select(Turn.intent, func.count())
        .where(Turn.asked_again.is_not(None), Turn.intent.is_not(None), *recent)
        .group_by(Turn.intent)
    ).all()
    for intent, count in again:
        row(str(intent)).asked_again = int(count)

    audit = ReviewItemTurn.reason.like("%audit%")
    audits = session.execute(
        select(Turn.intent, ReviewItem.status, ReviewItem.resolved_label)
        .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
        .join(ReviewItem, ReviewItem.id == ReviewItemTurn.item_id)
        .where(
            audit,
            # The same condition again, as a list of turn ids: without it SQLite's planner walked every
            # answered turn of the period and looked each up among the items' members (270 ms on a busy
            # month); with it, only the few audited turns are (about 40 ms).
            Turn.id.in_(select(ReviewItemTurn.turn_id).where(audit)),
            Turn.status == "answered",
            Turn.intent.is_not(None),
            ReviewItem.is_gold.is_(False),
            *recent,
        )
    ).all()
    pending = 0
    for intent, status, label in audits:
        if status != "resolved":
            pending += 1
            continue
        quality = row(str(intent))
        quality.audited += 1
        quality.audited_correct += int(label == intent)

    # The answer reviewers rated is the one shown to the item's first member: only where that turn was
    # answered (a handoff or clarify message says nothing about an intent's answer text).
    first_turn = (
        select(func.min(ReviewItemTurn.turn_id))
        .where(ReviewItemTurn.item_id == ReviewItem.id)
        .correlate(ReviewItem)
        .scalar_subquery()
    )
    verdicts = session.execute(
        select(
            ReviewItem.bot_intent,
            func.count(),
            func.sum(case((Judgement.answer_ok.is_(True), 1), else_=0)),
        )
        .join(Judgement, Judgement.item_id == ReviewItem.id)
        .join(Turn, Turn.id == first_turn)
        .where(
            Judgement.answer_ok.is_not(None),
            Turn.status == "answered",
            Turn.intent == ReviewItem.bot_intent,
            ReviewItem.is_gold.is_(False),
            *([ReviewItem.created_at >= since] if since is not None else []),
        )
        .group_by(ReviewItem.bot_intent)
    ).all()
    for intent, votes, acceptable in verdicts:
        quality = row(str(intent))
        quality.answer_votes, quality.answer_acceptable = int(votes), int(acceptable or 0)

    return QualityReport(
        audited=sum(q.audited for q in intents.values()),
        audited_correct=sum(q.audited_correct for q in intents.values()),
        audits_pending=pending,
        intents=intents,
    )


@dataclass(frozen=True)
class KeptOut:
    """Questions the bot would have answered as ``intent`` had their page's metadata not left it out."""

    intent: str
    count: int
    pages: list[tuple[str, int]]  # the filters that kept it out ("product: fx"), most frequent first


KEPT_OUT_PAGES_READ = 500  # the newest turns of an intent whose filters are read for the page breakdown


def kept_out_answers(session: Session, *, since: datetime | None = None, limit: int = 10) -> list[KeptOut]:
    """The intents most often kept from their question by a metadata filter, most frequent first (counted
    exactly), each with the filters that did it (read from its newest KEPT_OUT_PAGES_READ such turns)."""
    recent = [Turn.created_at >= since] if since is not None else []
    counted = session.execute(
        select(Turn.kept_from, func.count())
        .where(Turn.kept_from.is_not(None), *recent)
        .group_by(Turn.kept_from)
        .order_by(func.count().desc(), Turn.kept_from)
        .limit(limit)
    ).all()
    result = []
    for intent, count in counted:
        pages: dict[str, int] = {}
        for (metadata_filter,) in session.execute(
            select(Turn.metadata_filter)
            .where(Turn.kept_from == intent, *recent)
            .order_by(Turn.id.desc())
            .limit(KEPT_OUT_PAGES_READ)
        ):
            pairs = (metadata_filter or {}).get("metadata", [])
            joiner = " or " if (metadata_filter or {}).get("logical_operation") == "OR" else " and "
            page = joiner.join(f"{p['key']}: {p['value']}" for p in pairs) or "(none)"
            pages[page] = pages.get(page, 0) + 1
        ranked = sorted(pages.items(), key=lambda kv: (-kv[1], kv[0]))
        result.append(KeptOut(str(intent), int(count), ranked))
    return result


@dataclass(frozen=True)
class LabelMixup:
    """Reviewers answered ``chosen`` ``times`` times on questions whose settled label is ``settled`` (out of
    ``judgements`` answers on such questions)."""

    settled: str
    chosen: str
    times: int
    judgements: int

    @property
    def share(self) -> float:
        return self.times / self.judgements


def label_mixups(
    session: Session,
    *,
    since: datetime | None = None,
    min_times: int = 2,
    limit: int = 10,
    reviewer_id: int | None = None,
) -> list[LabelMixup]:
    """The label pairs reviewers mix up most: answers that differ from the settled label of resolved items
    and of check questions in use (a retired key is no longer trusted), most frequent first; pairs seen fewer
    than ``min_times`` times are left out. ``since``: answers given from then on. ``reviewer_id``: that
    reviewer's answers only, on resolved items only (what they are shown of their own work must never give
    a check question's key away)."""
    settled = case((ReviewItem.is_gold.is_(True), ReviewItem.gold_label), else_=ReviewItem.resolved_label)
    resolved = and_(ReviewItem.is_gold.is_(False), ReviewItem.status == "resolved")
    gold_in_use = and_(ReviewItem.is_gold.is_(True), ReviewItem.status != RETIRED)
    query = (
        select(settled, Judgement.label, func.count())
        .join(Judgement, Judgement.item_id == ReviewItem.id)
        .where(resolved if reviewer_id is not None else or_(gold_in_use, resolved))
        .group_by(settled, Judgement.label)
    )
    if since is not None:
        query = query.where(Judgement.created_at >= since)
    if reviewer_id is not None:
        query = query.where(Judgement.reviewer_id == reviewer_id)
    totals: dict[str, int] = {}
    differing: dict[tuple[str, str], int] = {}
    for label, chosen, count in session.execute(query):
        if label is None:
            continue
        totals[label] = totals.get(label, 0) + int(count)
        if chosen != label:
            differing[(label, chosen)] = int(count)
    mixups = [
        LabelMixup(label, chosen, count, totals[label])
        for (label, chosen), count in differing.items()
        if count >= min_times
    ]
    mixups.sort(key=lambda m: (-m.times, -m.share, m.settled, m.chosen))
    return mixups[:limit]


@dataclass(frozen=True)
class Overview:
    """The operator overview's figures over the last days (today included): the page shows them, the admin
    API's ``/stats`` returns them."""

    since: datetime  # the start of the first day
    traffic: list[DayTraffic]
    quality: QualityReport
    choices: ClarifyChoices
    complaints: ClarifyChoices  # the choices offered after "that's wrong"
    corrections: list[Correction]  # what customers picked instead of which answer
    choice_sets: list[ChoiceSet]
    choices_scanned: int
    pick_trust: PickTrust  # of the picks after "did you mean"
    complaint_pick_trust: PickTrust  # of the picks after "that's wrong" (measured apart)
    satisfaction: Satisfaction
    workforce: Workforce
    mixups: list[LabelMixup]
    kept_out: list[KeptOut]  # answers a page's metadata kept from questions the bot would have answered
    # declined messages written in another language, by language (bot.language)
    other_languages: dict[str, int] = field(default_factory=dict)
    # answers asked for again: given again with the offer of a person, or passed to one (bot.repetition)
    asked_again: AskedAgain = AskedAgain(0, 0)
    # conversations handed to a person and how fast the team answered them (by the team's hours when set)
    team_response: TeamResponse | None = None


def overview(
    session: Session, *, days: int = 30, now: datetime | None = None, hours: TeamHours | None = None
) -> Overview:
    traffic = daily_traffic(session, days=days, now=now)
    since = datetime.combine(traffic[0].day, datetime.min.time(), tzinfo=UTC)
    sets, scanned = choice_sets(session, since=since)
    return Overview(
        since=since,
        traffic=traffic,
        quality=answer_quality(session, since=since),
        choices=clarify_choices(session, since=since),
        complaints=complaint_choices(session, since=since),
        corrections=corrections(session, since=since),
        choice_sets=sets,
        choices_scanned=scanned,
        pick_trust=pick_trust(session),
        complaint_pick_trust=pick_trust(session, after_complaint=True),
        satisfaction=satisfaction(session, since=since),
        workforce=workforce(session, since=since),
        mixups=label_mixups(session, since=since),
        kept_out=kept_out_answers(session, since=since),
        other_languages=other_languages(session, since=since),
        asked_again=asked_again(session, since=since),
        team_response=team_response(session, since=since, hours=hours),
    )
