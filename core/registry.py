"""Model registry and turn log: domain functions, session first, keyword-only arguments."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session, aliased, load_only

from core import channels, presence
from core.events import emit
from core.kb_files import OUT_OF_SCOPE
from core.models import (
    AnswerPolicy,
    Conversation,
    ConversationMessage,
    Deployment,
    ModelVersion,
    Turn,
    as_utc,
    finite,
    utcnow,
)
from core.pages import Page
from core.redaction import scrub_secrets
from core.team_hours import TeamHours
from core.turn_search import user_text_matches


class NotFoundError(LookupError):
    """A row the caller named does not exist."""


class HandoffError(ValueError):
    """A handoff action that does not apply to this conversation."""


class ContactError(ValueError):
    """What the customer left is neither an e-mail address nor a phone number."""


# small_talk: bot.small_talk; asked_for_person: the customer typed a request for a person; off_topic: declined
# as off the knowledge base's topic, passed to nobody (both bot.handoff)
TURN_STATUSES = ("answered", "clarify", "handoff", "small_talk", "asked_for_person", "off_topic")


def register_model_version(
    session: Session,
    *,
    version: str,
    bundle_path: str,
    data_hash: str,
    metrics: dict[str, Any],
    kb_version_id: int | None,
) -> ModelVersion:
    row = ModelVersion(
        version=version,
        bundle_path=bundle_path,
        data_hash=data_hash,
        metrics=finite(metrics),
        kb_version_id=kb_version_id,
    )
    session.add(row)
    session.flush()
    return row


def latest_model_version(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()


def get_or_create_conversation(
    session: Session, *, conversation_id: str | None, channel: str, page: Page | None = None
) -> Conversation:
    """The conversation, its last activity now; ``page``: the web page the widget asked from (core.pages),
    kept as the conversation's latest."""
    if conversation_id:
        existing = session.get(Conversation, conversation_id)
        if existing is not None:
            existing.last_activity_at = utcnow()
            on_page(existing, page)
            return existing
        conversation = Conversation(id=conversation_id, channel=channel)
    else:
        conversation = Conversation(channel=channel)
    on_page(conversation, page)
    session.add(conversation)
    session.flush()
    return conversation


@dataclass(frozen=True)
class WidgetSite:
    site: str
    chats: int
    last: datetime


def widget_sites(session: Session, *, since: datetime) -> list[WidgetSite]:
    """The sites the widget answered on since ``since`` (core.pages): their chats, the last one; most chats
    first. Read from the conversations' activity index."""
    rows = session.execute(
        select(Conversation.site, func.count(), func.max(Conversation.last_activity_at))
        .where(Conversation.site.is_not(None), Conversation.last_activity_at >= since)
        .group_by(Conversation.site)
        .order_by(func.count().desc(), Conversation.site)
    )
    return [WidgetSite(site=str(site), chats=int(chats), last=last) for site, chats, last in rows]


@dataclass(frozen=True)
class PageOutcome:
    """What became of the questions asked from one web page (the widget's ``page``) over a period."""

    page: str
    questions: int  # messages the bot read: not a clicked chip, not small talk
    answered: int
    clarified: int  # "did you mean" asked
    to_person: int  # handed to a person: by the bot, or asked for by the customer
    off_topic: int
    thumbs_down: int

    @property
    def not_answered(self) -> int:
        return self.questions - self.answered


def widget_pages(session: Session, *, since: datetime, limit: int = 20) -> list[PageOutcome]:
    """The pages the widget's questions came from since ``since``, those the bot helped least first: the most
    questions not answered, then the most questions. Read from the index of the widget's turns (0059)."""
    status, counted = Turn.status, func.count()
    answered = func.sum(case((status == "answered", 1), else_=0))
    rows = session.execute(
        select(
            Turn.page,
            counted,
            answered,
            func.sum(case((status == "clarify", 1), else_=0)),
            func.sum(case((status.in_(("handoff", "asked_for_person")), 1), else_=0)),
            func.sum(case((status == "off_topic", 1), else_=0)),
            func.sum(case((Turn.helpful.is_(False), 1), else_=0)),
        )
        .where(
            Turn.page.is_not(None),
            Turn.created_at >= since,
            Turn.served_by != SUGGESTION_ARM,
            status != "small_talk",
        )
        .group_by(Turn.page)
        .order_by((counted - answered).desc(), counted.desc(), Turn.page)  # PageOutcome.not_answered first
        .limit(limit)
    )
    return [PageOutcome(str(row[0]), *(int(n or 0) for n in row[1:])) for row in rows]


def on_page(conversation: Conversation, page: Page | None) -> None:
    """The page the customer is on now, when the widget said (a chat goes on as they move between pages)."""
    if page is not None:
        conversation.site, conversation.page_url = page.site, page.url


def log_turn(
    session: Session,
    *,
    conversation_id: str,
    user_text: str,
    status: str,
    intent: str | None,
    answer: str,
    confidence: float,
    candidates: list[dict[str, Any]],
    member_scores: dict[str, Any],
    model_version: str,
    latency_ms: float,
    served_by: str = "production",
    shadow_prediction: dict[str, Any] | None = None,
    suggested: list[str] | None = None,
    rated_turn_id: int | None = None,
    metadata_filter: dict[str, Any] | None = None,
    kept_from: str | None = None,
    context_text: str | None = None,
    off_topic: bool = False,
    read_as: str | None = None,
    vague: bool = False,
    ruled_out: str | None = None,
    language: str | None = None,
    asked_again: int | None = None,
    page: str | None = None,
) -> Turn:
    """Log one message and the bot's reply. ``rated_turn_id``: on a typed "that's wrong", the answered turn it
    rated unhelpful (its ``suggested`` chips are the intents ranked next for that turn's question).
    ``metadata_filter``: the filter the question was answered under (its candidates are the intents it let
    through); ``kept_from``: the intent the bot would have answered with without it, when it kept the question
    from that answer. ``context_text``: the earlier question a follow-up was read with (``bot.follow_up``);
    ``off_topic``: below the model's familiarity floor (``Prediction.unfamiliar``; the status says what was
    done: "off_topic" since the bot declines such messages, "handoff" in turns logged before); ``read_as``:
    the message as the model read it, misspelt words corrected (``Prediction.read_as``); ``vague``: a keyword
    message asked about rather than answered (``Prediction.vague``); ``ruled_out``: the intent the customer
    said the message is not about, left out of the answer (``Prediction.ruled_out``); ``language``: a declined
    message's other language (``bot.language``); ``asked_again``: asked again for the conversation's last
    answer, how many times in a row it has now been given (``bot.repetition``); ``page``: the web page it was
    written from (``core.pages.Page.url``)."""
    if status not in TURN_STATUSES:
        raise ValueError(f"status must be one of {TURN_STATUSES}, not {status!r}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0, 1], not {confidence}")
    turn = Turn(
        conversation_id=conversation_id,
        user_text=scrub_secrets(user_text),
        status=status,
        intent=intent,
        answer=answer,
        confidence=confidence,
        candidates=candidates,
        member_scores=member_scores,
        model_version=model_version,
        latency_ms=latency_ms,
        served_by=served_by,
        shadow_prediction=shadow_prediction,
        suggested=suggested,
        rated_turn_id=rated_turn_id,
        metadata_filter=metadata_filter,
        kept_from=kept_from,
        context_text=scrub_secrets(context_text) if context_text else None,
        off_topic=off_topic,
        read_as=scrub_secrets(read_as) if read_as else None,
        vague=vague,
        ruled_out=ruled_out,
        language=language,
        asked_again=asked_again,
        page=page,
    )
    session.add(turn)
    if status == "handoff":  # handed to a person again after an operator closed the last handoff
        _reopen_handoff(session, conversation_id)
    session.flush()
    return turn


# A clicked chip is logged as a turn of its own, answered by this arm (no prediction: the customer named the
# intent). It is not a question the bot answered, so the overview and the trend leave it out of the shares.
SUGGESTION_ARM = "suggestion"
# What a clicked chip sends: "/<intent>" (the Rasa button convention). No question: never a training text.
CHIP_PAYLOAD = re.compile(r"^/([A-Za-z0-9][^\s/\\,|]{0,99})$")
LEGACY_SHOWN = 3  # the most "did you mean" chips a clarify reply had before the shown ones were logged


def shown_suggestions(turn: Turn) -> list[str]:
    """The intents a turn's reply showed as chips, in order (for turns logged before migration 0015: the
    in-scope top candidates a clarify reply could have shown)."""
    return _shown(turn.suggested, turn.status, turn.candidates)


def _shown(suggested: list[str] | None, status: str, candidates: list[dict[str, Any]] | None) -> list[str]:
    if suggested is not None:
        return list(suggested)
    if status != "clarify":
        return []
    return [c["intent"] for c in candidates or [] if c.get("intent") != OUT_OF_SCOPE][:LEGACY_SHOWN]


def _legacy_candidates() -> Any:
    """``Turn.candidates`` where ``_shown`` needs it (a turn logged before the chips were stored), NULL
    elsewhere: a report over thousands of turns then does not read and decode every turn's ranking (half
    the time of the overview's "did you mean" figures on a busy month)."""
    return type_coerce(case((Turn.suggested.is_(None), Turn.candidates)), Turn.candidates.type)


@dataclass(frozen=True)
class Choice:
    turn: Turn  # the turn whose chips the customer answered: a "did you mean" or a typed "that's wrong"
    intent: str
    rank: int  # 1: the first chip shown
    shown: int  # how many chips there were

    @property
    def after_complaint(self) -> bool:
        """The choice answers "that's wrong" (the intents ranked next for the rated answer's question), not
        the bot's own "did you mean"."""
        return self.turn.rated_turn_id is not None


def latest_turn(
    session: Session, *, conversation_id: str, before_id: int | None = None, columns: Sequence[Any] = ()
) -> Turn | None:
    """The conversation's newest turn (``before_id``: the newest before that turn; ``columns``: only these
    loaded, the rest when first read)."""
    query = select(Turn).where(Turn.conversation_id == conversation_id)
    if columns:
        query = query.options(load_only(*columns))
    if before_id is not None:
        query = query.where(Turn.id < before_id)
    return session.scalars(query.order_by(Turn.id.desc()).limit(1)).first()


def asks_which(turn: Turn) -> bool:
    """Whether ``turn`` is a "which one?" reply: a yes to several choices, small talk that shows the same
    chips again and rates nothing (bot.choice.WHICH_ONE). The choices it shows stay those of the turn before
    it, which a pick answers (``offering_turn``)."""
    return turn.status == "small_talk" and turn.rated_turn_id is None and bool(turn.suggested)


WHICH_ONE_TURNS_READ = 5  # how many "which one?" replies in a row are looked past


def offering_turn(
    session: Session, *, conversation_id: str, before_id: int | None = None, columns: Sequence[Any] = ()
) -> Turn | None:
    """The turn whose choices a typed or clicked pick answers: the conversation's newest (before
    ``before_id``), or, when that is a "which one?" reply (``asks_which``), the turn before it."""
    turn = latest_turn(session, conversation_id=conversation_id, before_id=before_id, columns=columns)
    for _ in range(WHICH_ONE_TURNS_READ):
        if turn is None or not asks_which(turn):
            return turn
        turn = latest_turn(session, conversation_id=conversation_id, before_id=turn.id, columns=columns)
    return turn


# What open_choices reads of a turn (the chat looks it up for short messages: not the candidates and scores,
# which only turns logged before the chips were stored need).
CHOICE_COLUMNS = (Turn.status, Turn.suggested, Turn.chosen_intent, Turn.declined_at, Turn.rated_turn_id)


def open_choices(latest: Turn | None) -> list[str]:
    """The intents a conversation's ``latest`` turn offered to choose from and none was chosen yet: a "did
    you mean", or the intents ranked next after a typed "that's wrong". Empty after anything else (an
    answer's follow-up chips are no question to the customer)."""
    if latest is None or latest.chosen_intent is not None or latest.declined_at is not None:
        return []
    if latest.status != "clarify" and latest.rated_turn_id is None:
        return []
    return shown_suggestions(latest)


def record_declined(session: Session, *, conversation_id: str, now: datetime | None = None) -> Turn | None:
    """The customer answered the latest turn's choices with "none of these": remember it on that turn (for
    review and the overview). None when that turn offered no choices still open. Call it before the reply's
    own turn is logged."""
    latest = offering_turn(session, conversation_id=conversation_id)
    if latest is None or not open_choices(latest):
        return None
    latest.declined_at = now or utcnow()
    session.flush()
    return latest


def record_choice(
    session: Session, *, conversation_id: str, intent: str, now: datetime | None = None
) -> Choice | None:
    """A customer clicked the chip of ``intent``: when the conversation's latest turn asked "did you mean", or
    answered a typed "that's wrong" with the intents ranked next, and showed that intent, remember the choice
    on that turn (the customer's own answer to the question, for review and the overview). Follow-up chips of
    an answered turn, a second click, or an intent that was not offered record nothing. Call it before the
    chip's own turn is logged. After a "which one?" reply, the turn before it is the one answered."""
    latest = offering_turn(session, conversation_id=conversation_id)
    shown = open_choices(latest)
    if latest is None or intent not in shown:
        return None
    latest.chosen_intent, latest.chosen_at = intent, now or utcnow()
    session.flush()
    return Choice(turn=latest, intent=intent, rank=shown.index(intent) + 1, shown=len(shown))


@dataclass(frozen=True)
class ClarifyChoices:
    """How customers answered "did you mean": of the clarify turns, how many ended in a click on a choice, and
    on which one (1: the first shown); how many in "none of these" (``declined``)."""

    asked: int
    picked: int
    by_rank: dict[int, int]
    declined: int = 0

    @property
    def picked_share(self) -> float | None:
        return self.picked / self.asked if self.asked else None


def clarify_choices(session: Session, *, since: datetime) -> ClarifyChoices:
    return _choices(
        session, since, Turn.status == "clarify", Turn.served_by != SUGGESTION_ARM, complaints=False
    )


def complaint_choices(session: Session, *, since: datetime) -> ClarifyChoices:
    """The same for the choices offered after a typed "that's wrong" (the intents ranked next for the answer
    it rated): how often what the customer meant was among them, as far as they clicked."""
    return _choices(session, since, Turn.rated_turn_id.is_not(None), complaints=True)


@dataclass(frozen=True)
class Correction:
    """Answers customers called wrong, and what they picked instead from the intents ranked next."""

    answered: str  # the intent the bot answered with
    picked: str  # the choice the customer clicked after "that's wrong"
    times: int


def corrections(session: Session, *, since: datetime, limit: int = 10) -> list[Correction]:
    """The most frequent (answered, picked instead) pairs since ``since``: which answer customers take for
    which other intent (the first place to look for examples filed under the wrong intent)."""
    rated = aliased(Turn)
    times = func.count().label("times")
    rows = session.execute(
        select(rated.intent, Turn.chosen_intent, times)
        .join(rated, rated.id == Turn.rated_turn_id)
        .where(
            Turn.rated_turn_id.is_not(None),  # (the partial index of complaints by time)
            Turn.chosen_intent.is_not(None),
            Turn.created_at >= since,
            rated.intent.is_not(None),
        )
        .group_by(rated.intent, Turn.chosen_intent)
        .order_by(times.desc(), rated.intent, Turn.chosen_intent)
        .limit(limit)
    ).all()
    return [Correction(str(answered), str(picked), int(n)) for answered, picked, n in rows]


def other_languages(session: Session, *, since: datetime) -> dict[str, int]:
    """Messages declined as off topic that were written in another language since ``since``, by language,
    most first (from their own partial index: a few in a thousand turns)."""
    rows = session.execute(
        select(Turn.language, func.count())
        .where(Turn.language.is_not(None), Turn.created_at >= since)
        .group_by(Turn.language)
    ).all()
    return {str(language): int(n) for language, n in sorted(rows, key=lambda row: (-row[1], row[0]))}


@dataclass(frozen=True)
class AskedAgain:
    """A month's answers asked for again (``asked_again``): given once more with the offer of a person, and
    the conversations passed to a person instead of giving the answer once more."""

    answered: int
    handed_over: int


def asked_again(session: Session, *, since: datetime) -> AskedAgain:
    """Turns since ``since`` that asked again for the conversation's last answer (from their own partial
    index: a few in a hundred turns)."""
    # Summed, not grouped by status: a GROUP BY leads SQLite's planner to walk the status index instead.
    answered, handed_over = session.execute(
        select(
            func.sum(case((Turn.status == "answered", 1), else_=0)),
            func.sum(case((Turn.status == "handoff", 1), else_=0)),
        ).where(Turn.asked_again.is_not(None), Turn.created_at >= since)
    ).one()
    return AskedAgain(answered=int(answered or 0), handed_over=int(handed_over or 0))


def _choices(session: Session, since: datetime, *asked_where: Any, complaints: bool) -> ClarifyChoices:
    asked = session.scalar(  # from the covering index of turns by status and time alone
        select(func.count()).select_from(Turn).where(*asked_where, Turn.created_at >= since)
    )
    # The few answered "none of these", from their own partial index: by time alone (with the status in the
    # query, SQLite's planner without statistics walks every clarify turn ever logged instead), each then
    # told a "did you mean" from the choices after "that's wrong".
    declined = sum(
        (rated is not None) == complaints and (complaints or (status == "clarify" and arm != SUGGESTION_ARM))
        for status, arm, rated in session.execute(
            select(Turn.status, Turn.served_by, Turn.rated_turn_id).where(Turn.declined_at >= since)
        )
    )
    by_rank: dict[int, int] = {}
    for suggested, status, candidates, chosen in session.execute(
        select(Turn.suggested, Turn.status, _legacy_candidates(), Turn.chosen_intent).where(
            *asked_where, Turn.created_at >= since, Turn.chosen_intent.is_not(None)
        )
    ):
        shown = _shown(suggested, status, candidates)
        rank = shown.index(chosen) + 1 if chosen in shown else 0
        by_rank[rank] = by_rank.get(rank, 0) + 1
    return ClarifyChoices(
        asked=int(asked or 0), picked=sum(by_rank.values()), by_rank=by_rank, declined=int(declined or 0)
    )


@dataclass(frozen=True)
class ChoiceSet:
    """Intents the bot offered together when it asked "did you mean", and what customers did."""

    shown: tuple[str, ...]  # sorted: the same choices in another order are the same question
    asked: int
    picks: dict[str, int]  # intent -> clicks, most clicked first

    @property
    def unpicked(self) -> int:
        return self.asked - sum(self.picks.values())


def choice_sets(
    session: Session, *, since: datetime, limit: int = 10, scan: int = 5000
) -> tuple[list[ChoiceSet], int]:
    """The sets of choices most often offered after "did you mean" among the latest ``scan`` clarify turns
    since ``since``, and how many turns were read: which intents customers' questions fall between, and which
    one they mean (a set where one choice wins is a hint to give that intent more examples)."""
    rows = session.execute(
        select(Turn.suggested, _legacy_candidates(), Turn.chosen_intent, Turn.status)
        .where(Turn.status == "clarify", Turn.created_at >= since, Turn.served_by != SUGGESTION_ARM)
        .order_by(Turn.id.desc())
        .limit(scan)
    ).all()
    asked: dict[tuple[str, ...], int] = {}
    picks: dict[tuple[str, ...], dict[str, int]] = {}
    for suggested, candidates, chosen, status in rows:
        shown = tuple(sorted(_shown(suggested, status, candidates)))
        if not shown:
            continue
        asked[shown] = asked.get(shown, 0) + 1
        if chosen is not None:
            tally = picks.setdefault(shown, {})
            tally[chosen] = tally.get(chosen, 0) + 1
    ranked = sorted(asked, key=lambda key: (-asked[key], key))[:limit]
    return [
        ChoiceSet(
            shown=key,
            asked=asked[key],
            picks=dict(sorted(picks.get(key, {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        )
        for key in ranked
    ], len(rows)


def _reopen_handoff(session: Session, conversation_id: str) -> None:
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.handoff_closed_at.is_not(None))
        .values(handoff_closed_at=None, handoff_closed_by=None, handoff_note=None)
    )


def record_feedback(session: Session, *, turn_id: int, helpful: bool, comment: str | None = None) -> Turn:
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise NotFoundError(f"turn {turn_id} does not exist")
    turn.helpful = helpful
    turn.feedback_comment = scrub_secrets(comment) if comment else comment
    turn.feedback_at = utcnow()
    session.flush()
    return turn


def last_answer_to_rate(session: Session, *, conversation_id: str) -> Turn | None:
    """The conversation's latest turn when it is an answer the customer has not rated yet: what a typed
    "that's wrong" is about (None after small talk, a "did you mean" or a handoff, or once rated)."""
    latest = latest_turn(session, conversation_id=conversation_id)
    if latest is None or latest.status != "answered" or latest.helpful is not None:
        return None
    return latest


EARLIER_TURNS_READ = 6  # how far back a follow-up's earlier question is looked for
EARLIER_COLUMNS = (
    Turn.user_text,
    Turn.context_text,
    Turn.intent,
    Turn.status,
    Turn.served_by,
    Turn.chosen_intent,
    Turn.rated_turn_id,
    Turn.suggested,
)


@dataclass(frozen=True)
class EarlierQuestion:
    """The question before a new message (``earlier_question``): as typed, the earlier text it was itself read
    with (a follow-up's), and the intent its answer gave (None: a "did you mean" or a handoff)."""

    user_text: str
    context_text: str | None
    intent: str | None


def earlier_question(session: Session, *, conversation_id: str, since: datetime) -> EarlierQuestion | None:
    """The conversation's latest question the model read, asked at ``since`` or later, for reading a follow-up
    with it; small talk ("thanks") and typed requests for a person in between are passed over. After a
    clicked "did you mean" chip it is the question that offered the chip (or, after "that's wrong", the
    question of the answer rated), answered with the chip's intent; a follow-up chip (the customer asked
    nothing) ends the search."""
    turns = session.scalars(
        select(Turn)
        .options(load_only(*EARLIER_COLUMNS))  # not the candidates and scores of every turn
        .where(Turn.conversation_id == conversation_id, Turn.created_at >= since)
        .order_by(Turn.id.desc())
        .limit(EARLIER_TURNS_READ)
    ).all()
    for i, turn in enumerate(turns):
        if turn.served_by == SUGGESTION_ARM:  # the turn that offered it, past any "which one?" reply
            offered = next((t for t in turns[i + 1 :] if not asks_which(t)), None)
            if offered is None or offered.chosen_intent != turn.intent:
                return None
            question = session.get(Turn, offered.rated_turn_id) if offered.rated_turn_id else offered
            if question is None or question.served_by == SUGGESTION_ARM:
                return None
            return EarlierQuestion(question.user_text, question.context_text, turn.intent)
        if turn.status in ("small_talk", "asked_for_person"):
            continue
        return EarlierQuestion(
            turn.user_text, turn.context_text, turn.intent if turn.status == "answered" else None
        )
    return None


@dataclass(frozen=True)
class LastAnswer:
    """A conversation's latest answer (``last_answer``): its turn, its intent, and how many times in a row
    that answer had been given with it (1: once)."""

    turn_id: int
    intent: str
    times: int


def last_answer(session: Session, *, conversation_id: str, since: datetime) -> LastAnswer | None:
    """The conversation's latest reply, given at ``since`` or later, when it answered (a question the model
    read or a clicked chip), with only small talk after it ("thanks", a typed "that's wrong"): what a new
    answer with the same intent gives again (``bot.repetition``). None after a "did you mean", a handoff, an
    off-topic line or a request for a person."""
    turns = session.scalars(
        select(Turn)
        .options(load_only(Turn.status, Turn.intent, Turn.asked_again))
        .where(Turn.conversation_id == conversation_id, Turn.created_at >= since)
        .order_by(Turn.id.desc())
        .limit(EARLIER_TURNS_READ)
    ).all()
    for turn in turns:
        if turn.status == "small_talk":
            continue
        if turn.status != "answered" or turn.intent is None:
            return None
        return LastAnswer(turn.id, turn.intent, turn.asked_again or 1)
    return None


def question_behind(session: Session, *, turn_id: int) -> int | None:
    """The turn whose question a thumbs-down on ``turn_id`` is about, for review: the turn itself when the
    model read it; for a clicked "did you mean" chip, the question that offered it (the chip's own text is
    "/intent"); None for a follow-up chip (the customer asked nothing the model read: the thumbs-down still
    counts against that intent's answer). A chip picked after a typed "that's wrong" is about the question of
    the answer that was rated."""
    turn = session.get(Turn, turn_id)
    if turn is None:
        return None
    if turn.served_by != SUGGESTION_ARM:
        return turn.id
    before = offering_turn(session, conversation_id=turn.conversation_id, before_id=turn.id)
    if before is None or before.chosen_intent != turn.intent:
        return None
    if before.rated_turn_id is not None:
        return before.rated_turn_id
    return before.id if before.status == "clarify" else None


def get_conversation(session: Session, *, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFoundError(f"session {conversation_id} does not exist")
    return conversation


def request_handoff(session: Session, *, conversation_id: str) -> Conversation:
    conversation = get_conversation(session, conversation_id=conversation_id)
    if conversation.handoff_requested_at is None or conversation.handoff_closed_at is not None:
        conversation.handoff_requested_at = utcnow()  # a new request after a closed one reopens it
        conversation.handoff_closed_at = None
        conversation.handoff_closed_by = None
        conversation.handoff_note = None
    session.flush()
    return conversation


CONTACT_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
CONTACT_PHONE = re.compile(r"^\+?[0-9(][0-9 ()./-]{5,24}$")


def handoff_open(session: Session, *, conversation_id: str) -> bool:
    """Whether the conversation is already in the handoff inbox (so a new handoff is not news)."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.handoff_closed_at is not None:
        return False
    return conversation.handoff_requested_at is not None or _bot_handed_off(session, conversation_id)


def _bot_handed_off(session: Session, conversation_id: str) -> bool:
    handed = select(Turn.id).where(Turn.conversation_id == conversation_id, Turn.status == "handoff")
    return session.scalar(handed.limit(1)) is not None


def leave_contact(session: Session, *, conversation_id: str, contact: str) -> Conversation:
    """The customer leaves an e-mail address or phone number for the person who takes over; leaving one is
    asking for a person, so the conversation joins the handoff inbox."""
    contact = contact.strip()
    digits = sum(c.isdigit() for c in contact)
    if not (CONTACT_EMAIL.match(contact) or (CONTACT_PHONE.match(contact) and 7 <= digits <= 15)):
        raise ContactError("give an e-mail address or a phone number")
    conversation = request_handoff(session, conversation_id=conversation_id)
    conversation.contact = contact[:200]
    session.flush()
    return conversation


def close_handoff(
    session: Session, *, conversation_id: str, actor: str, note: str = "", handback: str | None = None
) -> Conversation:
    """An operator has dealt with a conversation that was handed to a person: it leaves the inbox.
    ``handback``: on a messaging app where someone from the team chatted, this text goes to the chat with the
    five rating buttons (``core.channels.rating_request``; the widget asks by itself), in this transaction."""
    conversation = get_conversation(session, conversation_id=conversation_id)
    if conversation.handoff_closed_at is not None:
        raise HandoffError(f"already marked handled by {conversation.handoff_closed_by}")
    if conversation.handoff_requested_at is None and not _bot_handed_off(session, conversation_id):
        raise HandoffError("this conversation was not handed to a person")
    conversation.handoff_closed_at = utcnow()
    conversation.handoff_closed_by = actor[:100]
    conversation.handoff_note = note.strip()[:500] or None
    conversation.agent = None  # the live chat ends: the bot answers again
    if (  # a messaging app's chat (the widget asks by itself) where someone from the team chatted
        handback
        and conversation.channel in channels.CHANNELS
        and last_agent(session, conversation_id=conversation_id) is not None
    ):
        channels.queue(
            session,
            conversation_id=conversation_id,
            payload=channels.rating_request(conversation_id, handback),
        )
    session.flush()
    return conversation


MESSAGE_LIMIT = 2000  # characters of one live-chat message


class MessageError(ValueError):
    """A live-chat message that is empty or too long."""


def agent_active(conversation: Conversation) -> bool:
    """An operator is chatting with the customer: their messages go to the person, the bot stays quiet."""
    return conversation.agent is not None and conversation.handoff_closed_at is None


def _message_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise MessageError("the message is empty")
    if len(text) > MESSAGE_LIMIT:
        raise MessageError(f"the message is {len(text)} characters; the limit is {MESSAGE_LIMIT}")
    return scrub_secrets(text)


class RepliesCrossed(Exception):
    """Someone else from the team wrote to the customer after the newest message the replier had seen: their
    reply may now be beside the point, or say it twice."""

    def __init__(self, agents: list[str]) -> None:
        super().__init__(f"{presence.listed(agents)} wrote to the customer meanwhile")
        self.agents = agents


def agent_reply(
    session: Session,
    *,
    conversation_id: str,
    agent: str,
    text: str,
    template: tuple[str, str] | None = None,
    seen: int | None = None,
) -> ConversationMessage:
    """An operator writes to the customer of a conversation waiting for a person; the first reply takes the
    conversation over (the bot stays quiet until the handoff is marked handled). Another operator may reply
    too: the conversation then follows whoever wrote last. ``template`` (name, language): on WhatsApp, an
    approved message template is sent instead of ``text`` (which says so in the transcript). ``seen``: the
    newest live-chat message the replier's page showed; when someone else from the team wrote after it,
    ``RepliesCrossed`` is raised and nothing is sent."""
    conversation = get_conversation(session, conversation_id=conversation_id)
    if not handoff_open(session, conversation_id=conversation_id):
        raise HandoffError("this conversation is not waiting for a person: the customer did not ask for one")
    text = _message_text(text)
    if seen is not None:
        crossed = session.scalars(
            select(ConversationMessage.agent)
            .where(
                ConversationMessage.conversation_id == conversation_id,
                ConversationMessage.sender == "agent",
                ConversationMessage.id > seen,
                ConversationMessage.agent != agent[:100],
            )
            .order_by(ConversationMessage.id)
        ).all()
        if crossed:
            raise RepliesCrossed(list(dict.fromkeys(name or "someone" for name in crossed)))
    conversation.agent = agent[:100]
    message = ConversationMessage(
        conversation_id=conversation.id, sender="agent", agent=agent[:100], text=text
    )
    session.add(message)
    session.flush()
    # On a messaging app the customer is sent it (core.channels' outbox, in this transaction)
    payload: dict[str, Any] = {"text": text, "from": "agent", "message_id": message.id}
    if template is not None:
        payload["template"] = {"name": template[0], "language": template[1]}
    channels.queue(session, conversation_id=conversation.id, payload=payload)
    return message


def customer_message(session: Session, *, conversation_id: str, text: str) -> ConversationMessage:
    """The customer writes while an operator has taken the conversation over."""
    conversation = get_conversation(session, conversation_id=conversation_id)
    if not agent_active(conversation):
        raise HandoffError("no person is chatting in this conversation")
    conversation.last_activity_at = utcnow()
    message = ConversationMessage(
        conversation_id=conversation.id, sender="customer", text=_message_text(text)
    )
    session.add(message)
    session.flush()
    return message


NOTE = "note"  # the sender of a note of the team's: never shown or sent to the customer


def add_note(session: Session, *, conversation_id: str, author: str, text: str) -> ConversationMessage:
    """A note for the team on a conversation ("called her back, the card team re-sends it"), waiting for a
    person or not: shown in the transcript among the live chat's messages, never to the customer (not in the
    widget's poll, not sent to a messaging app or by e-mail), and no reply (the bot is not silenced, the
    customer's wait goes on). Personal data like the messages: redacted by the retention job, erased with the
    conversation."""
    conversation = get_conversation(session, conversation_id=conversation_id)
    message = ConversationMessage(
        conversation_id=conversation.id, sender=NOTE, agent=author[:100], text=_message_text(text)
    )
    session.add(message)
    session.flush()
    return message


def messages_after(
    session: Session, *, conversation_id: str, after: int = 0, notes: bool = False
) -> list[ConversationMessage]:
    """The live chat's messages with an id above ``after``, oldest first (what a poller has not seen); the
    team's notes only with ``notes`` (the team's pages: never the customer's)."""
    query = (
        select(ConversationMessage)
        .where(ConversationMessage.conversation_id == conversation_id, ConversationMessage.id > after)
        .order_by(ConversationMessage.id)
    )
    if not notes:
        query = query.where(ConversationMessage.sender != NOTE)
    return list(session.scalars(query).all())


# ------------------------------------------------------------------------- rating the live chat (CSAT)

RATINGS = range(1, 6)
LOW_RATING = 2  # at or below: an unhappy customer (the webhook tells the team; the inbox lists them apart)
RATING_COMMENT_LIMIT = 500


class RatingError(ValueError):
    """A rating that cannot be taken: out of 1-5, or too long a comment."""


class NothingToRate(RatingError):
    """Nobody from the team has chatted in the conversation."""


def last_agent(session: Session, *, conversation_id: str) -> str | None:
    """The team member who wrote last in the conversation's live chat (None: nobody did)."""
    return session.scalar(
        select(ConversationMessage.agent)
        .where(ConversationMessage.conversation_id == conversation_id, ConversationMessage.sender == "agent")
        .order_by(ConversationMessage.id.desc())
        .limit(1)
    )


def rate_chat(
    session: Session,
    *,
    conversation_id: str,
    rating: Any,
    comment: str | None = None,
    now: datetime | None = None,
) -> Conversation:
    """The customer rates the live chat they had with the team (1-5; rating again replaces it). The rating is
    credited to the team member who wrote last, so each person's satisfaction score can be read."""
    if isinstance(rating, bool) or not isinstance(rating, int) or rating not in RATINGS:
        raise RatingError("rating must be a whole number from 1 to 5")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > RATING_COMMENT_LIMIT:
        raise RatingError(f"the comment is longer than {RATING_COMMENT_LIMIT} characters")
    conversation = get_conversation(session, conversation_id=conversation_id)
    agent = last_agent(session, conversation_id=conversation_id)
    if agent is None:
        raise NothingToRate("nothing to rate: nobody from the team has chatted in this conversation")
    conversation.rating, conversation.rating_comment = rating, scrub_secrets(comment) if comment else comment
    conversation.rated_at, conversation.rated_agent = now or utcnow(), agent
    session.flush()
    return conversation


@dataclass(frozen=True)
class PersonSatisfaction:
    agent: str
    ratings: int
    satisfied: int  # rated 4 or 5
    total: int  # sum of the ratings

    @property
    def csat(self) -> float:
        """The share of ratings that are 4 or 5 (the usual CSAT)."""
        return self.satisfied / self.ratings

    @property
    def mean(self) -> float:
        return self.total / self.ratings


@dataclass(frozen=True)
class Satisfaction:
    people: list[PersonSatisfaction]  # most rated first
    by_rating: dict[int, int]

    @property
    def ratings(self) -> int:
        return sum(p.ratings for p in self.people)

    @property
    def csat(self) -> float | None:
        return sum(p.satisfied for p in self.people) / self.ratings if self.ratings else None

    @property
    def mean(self) -> float | None:
        return sum(p.total for p in self.people) / self.ratings if self.ratings else None


def satisfaction(session: Session, *, since: datetime) -> Satisfaction:
    """Customers' ratings of their live chats rated since ``since``: overall, per rating and per team member.
    One grouped query."""
    rows = session.execute(
        select(Conversation.rated_agent, Conversation.rating, func.count())
        .where(Conversation.rating.is_not(None), Conversation.rated_at >= since)
        .group_by(Conversation.rated_agent, Conversation.rating)
    ).all()
    people: dict[str, list[int]] = {}
    by_rating: dict[int, int] = {}
    for agent, value, count in rows:
        rating, count = int(value or 0), int(count)
        tally = people.setdefault(str(agent), [0, 0, 0])
        tally[0] += count
        tally[1] += count if rating >= 4 else 0
        tally[2] += rating * count
        by_rating[rating] = by_rating.get(rating, 0) + count
    ranked = sorted(people.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return Satisfaction(
        people=[PersonSatisfaction(agent, *tally) for agent, tally in ranked], by_rating=by_rating
    )


# ------------------------------------------------------------------- how fast the team answers a handoff


def _quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``values`` (the nearest rank: a wait some customer had), None if empty."""
    return values[min(len(values) - 1, max(0, int(-(-q * len(values) // 1)) - 1))] if values else None


@dataclass(frozen=True)
class HandoffTimes:
    """Conversations handed to a person in a period: how many a person replied to in the live chat, how
    many were marked handled, how many got no reply there but left a contact, and the waits (seconds,
    sorted) from the handoff to the first reply and to being marked handled."""

    handed: int = 0
    replied: int = 0
    handled: int = 0
    contact_only: int = 0
    first_reply: tuple[float, ...] = ()
    to_handled: tuple[float, ...] = ()

    @property
    def reply_share(self) -> float | None:
        return self.replied / self.handed if self.handed else None

    @property
    def median_first_reply(self) -> float | None:
        return _quantile(list(self.first_reply), 0.5)

    @property
    def p90_first_reply(self) -> float | None:
        return _quantile(list(self.first_reply), 0.9)

    @property
    def median_to_handled(self) -> float | None:
        return _quantile(list(self.to_handled), 0.5)


@dataclass(frozen=True)
class TeamResponse:
    """How fast the team answered the conversations handed to it (the customer asked for a person, or the
    bot handed off): all of them, and, when the team's hours are set (``HELPLOOP_TEAM_HOURS``), those that
    began within them and outside them apart (a wait overnight is expected, one at noon is not)."""

    all: HandoffTimes
    within_hours: HandoffTimes | None = None
    outside_hours: HandoffTimes | None = None


def _handoff_times(rows: list[tuple[datetime, datetime | None, datetime | None, bool]]) -> HandoffTimes:
    """(start, first reply, handled, contact left) a conversation -> the figures."""
    replies = sorted((reply - start).total_seconds() for start, reply, _, _ in rows if reply is not None)
    handled = sorted((done - start).total_seconds() for start, _, done, _ in rows if done is not None)
    return HandoffTimes(
        handed=len(rows),
        replied=len(replies),
        handled=len(handled),
        contact_only=sum(1 for _, reply, _, contact in rows if reply is None and contact),
        first_reply=tuple(max(0.0, r) for r in replies),
        to_handled=tuple(max(0.0, h) for h in handled),
    )


def team_response(session: Session, *, since: datetime, hours: TeamHours | None = None) -> TeamResponse:
    """The conversations handed to a person since ``since`` and how fast the team answered them. A
    conversation's handoff starts at its request for a person (the newest: a request after one marked
    handled starts again) or at the bot's first handoff in the period, whichever came first; its first reply
    is the team's first live-chat message after that. ``hours``: the team's hours, to split the figures by
    whether the handoff began within them. A few indexed queries."""
    starts: dict[str, datetime] = {}
    info: dict[str, tuple[datetime | None, str | None]] = {}  # handled at, contact
    requested = session.execute(
        select(
            Conversation.id,
            Conversation.handoff_requested_at,
            Conversation.handoff_closed_at,
            Conversation.contact,
        ).where(Conversation.handoff_requested_at >= since)
    ).all()
    for conversation_id, asked, closed, contact in requested:
        if asked is not None:  # the query's condition; for the type checker
            starts[conversation_id] = as_utc(asked)
        info[conversation_id] = (closed, contact)
    bot = session.execute(
        select(Turn.conversation_id, func.min(Turn.created_at))
        .where(Turn.status == "handoff", Turn.created_at >= since)
        .group_by(Turn.conversation_id)
    ).all()
    for conversation_id, first in bot:
        first = as_utc(first)
        starts[conversation_id] = min(starts.get(conversation_id, first), first)
    others = [c for c in starts if c not in info]
    for chunk in range(0, len(others), 500):
        found = session.execute(
            select(Conversation.id, Conversation.handoff_closed_at, Conversation.contact).where(
                Conversation.id.in_(others[chunk : chunk + 500])
            )
        ).all()
        info.update({conversation_id: (closed, contact) for conversation_id, closed, contact in found})
    ids = list(starts)
    first_reply: dict[str, datetime] = {}
    for chunk in range(0, len(ids), 500):
        replies = session.execute(
            select(ConversationMessage.conversation_id, ConversationMessage.created_at).where(
                ConversationMessage.conversation_id.in_(ids[chunk : chunk + 500]),
                ConversationMessage.sender == "agent",
                ConversationMessage.created_at >= since,
            )
        ).all()
        for conversation_id, at in replies:
            at = as_utc(at)
            if at >= starts[conversation_id] and (
                conversation_id not in first_reply or at < first_reply[conversation_id]
            ):
                first_reply[conversation_id] = at
    rows: list[tuple[str, tuple[datetime, datetime | None, datetime | None, bool]]] = []
    for conversation_id, start in starts.items():
        closed, contact = info.get(conversation_id, (None, None))
        done = as_utc(closed) if closed is not None and as_utc(closed) >= start else None
        rows.append((conversation_id, (start, first_reply.get(conversation_id), done, bool(contact))))
    result = TeamResponse(_handoff_times([row for _, row in rows]))
    if hours is None:
        return result
    opened = [(hours.is_open(row[0]), row) for _, row in rows]
    within = [row for is_open, row in opened if is_open]
    outside = [row for is_open, row in opened if not is_open]
    return TeamResponse(result.all, _handoff_times(within), _handoff_times(outside))


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    channel: str
    created_at: datetime
    last_activity_at: datetime
    turns: int
    handoff_turns: int
    unhelpful: int
    handoff_requested: bool
    closed_by: str | None
    last_message: str
    contact: str | None = None
    agent: str | None = None  # the operator chatting with the customer now
    customer_wrote_last: bool = False  # the live chat's last message is the customer's (an answer is due)
    rating: int | None = None  # the customer's rating of the live chat (1-5)
    match: str | None = None  # on a search: the newest of the customer's messages that holds the words
    match_turn: int | None = None  # its turn (None for a live-chat message)
    asked_again: int = 0  # turns that asked again for the answer just given (bot.repetition)
    # The customer's latest question the bot read, when the last message is something else: in the inbox the
    # last message is mostly "can I talk to a person?", "no" to "did you mean", or "thanks"
    question: str | None = None
    page: str | None = None  # the web page the widget chat was last on (core.pages)

    @property
    def waiting(self) -> bool:
        return (self.handoff_requested or self.handoff_turns > 0) and self.closed_by is None


def last_live_senders(session: Session, conversation_ids: list[str]) -> dict[str, str]:
    """Who wrote the newest live-chat message of each conversation (those without one are left out): the
    customer or someone from the team ("agent"); the team's notes are no message."""
    newest = (
        select(func.max(ConversationMessage.id))
        .where(ConversationMessage.conversation_id.in_(conversation_ids), ConversationMessage.sender != NOTE)
        .group_by(ConversationMessage.conversation_id)
    )
    rows = session.execute(
        select(ConversationMessage.conversation_id, ConversationMessage.sender).where(
            ConversationMessage.id.in_(newest)
        )
    ).all()
    return {conversation_id: sender for conversation_id, sender in rows}


@dataclass(frozen=True)
class WaitingConversation:
    id: str
    last_activity_at: datetime
    customer_wrote_last: bool  # in a live chat, the customer's message is the newest (an answer is due)


def waiting_conversations(session: Session, *, limit: int = 200) -> tuple[list[WaitingConversation], int]:
    """The handoff inbox alone, newest activity first, and how many wait in all: cheap enough to poll (the
    bot's handoffs come from the status index, not from counting every turn of every conversation)."""
    handed = select(Turn.conversation_id).where(Turn.status == "handoff")
    waiting = (
        Conversation.handoff_closed_at.is_(None),
        or_(Conversation.handoff_requested_at.is_not(None), Conversation.id.in_(handed)),
    )
    total = session.scalar(select(func.count()).select_from(Conversation).where(*waiting)) or 0
    rows = session.execute(
        select(Conversation.id, Conversation.last_activity_at)
        .where(*waiting)
        .order_by(Conversation.last_activity_at.desc(), Conversation.id)
        .limit(limit)
    ).all()
    last_sender = last_live_senders(session, [row.id for row in rows])
    return [
        WaitingConversation(row.id, row.last_activity_at, last_sender.get(row.id) == "customer")
        for row in rows
    ], int(total)


# A turn whose message the bot read as a question: not small talk, a typed request for a person or a pick.
_QUESTION = and_(Turn.status.not_in(("small_talk", "asked_for_person")), Turn.served_by != SUGGESTION_ARM)


def conversation_summaries(
    session: Session,
    *,
    waiting_only: bool = False,
    search: str = "",
    max_rating: int | None = None,
    asked_again_only: bool = False,
    asked_from: str = "",
    asked_since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ConversationSummary], int]:
    """Conversations newest activity first, with their counts and last message, and how many match in all.
    ``waiting_only``: handed to a person (asked for, or the bot handed off) and not yet marked handled.
    ``max_rating``: only live chats the customer rated at most this (the unhappy ones, to follow up).
    ``asked_again_only``: only conversations where the customer asked again for the answer just given
    (``bot.repetition``: an answer that did not settle it, to read). ``search``: a case-insensitive
    substring of any of the user's messages (originals: operators only), or on a messaging app the customer's
    number or id (``core.channels.chats_matching``). ``asked_from``: only conversations with a message written
    from that web page (``turns.page``), since ``asked_since`` when given (the install page's table of pages
    links here). The page is chosen on the
    conversations table alone (its activity index; the bot's handoffs from the turns' status index), and only
    its own conversations' turns are counted: the cost follows the page, not the length of the turn log."""
    conditions: list[Any] = []
    if waiting_only:
        conditions += [
            Conversation.handoff_closed_at.is_(None),
            or_(
                Conversation.handoff_requested_at.is_not(None),
                Conversation.id.in_(select(Turn.conversation_id).where(Turn.status == "handoff")),
            ),
        ]
    if max_rating is not None:
        conditions.append(Conversation.rating <= max_rating)
    if asked_again_only:  # a few turns in a hundred, from their own partial index
        again = select(Turn.conversation_id).where(Turn.asked_again.is_not(None))
        conditions.append(Conversation.id.in_(again))
    if asked_from:
        on_that_page = [Turn.page == asked_from]
        if asked_since is not None:  # the pages' own index, by time
            on_that_page.append(Turn.created_at >= asked_since)
        conditions.append(Conversation.id.in_(select(Turn.conversation_id).where(*on_that_page)))
    if search.strip():
        needle = search.strip().lower()
        matching = select(Turn.conversation_id).where(user_text_matches(session, search))
        live = select(ConversationMessage.conversation_id).where(
            ConversationMessage.sender == "customer",
            func.lower(ConversationMessage.text).contains(needle, autoescape=True),
        )
        found = [Conversation.id.in_(matching), Conversation.id.in_(live)]
        chats = channels.chats_matching(search)  # a customer's phone number or app id, as typed
        if chats is not None:
            found.append(Conversation.id.in_(chats))
        conditions.append(or_(*found))
    total = session.scalar(select(func.count()).select_from(Conversation).where(*conditions)) or 0
    page = session.scalars(
        select(Conversation)
        .where(*conditions)
        .order_by(Conversation.last_activity_at.desc(), Conversation.id)
        .limit(limit)
        .offset(offset)
    ).all()
    counts = {
        row.cid: row
        for row in session.execute(
            select(
                Turn.conversation_id.label("cid"),
                func.count().label("turns"),
                func.sum(case((Turn.status == "handoff", 1), else_=0)).label("handoff_turns"),
                func.sum(case((Turn.helpful.is_(False), 1), else_=0)).label("unhelpful"),
                func.sum(case((Turn.asked_again.is_not(None), 1), else_=0)).label("asked_again"),
                func.max(Turn.id).label("last_turn"),
                func.max(case((_QUESTION, Turn.id))).label("last_question"),
            )
            .where(Turn.conversation_id.in_([conversation.id for conversation in page]))
            .group_by(Turn.conversation_id)
        )
    }
    rows = [(conversation, counts.get(conversation.id)) for conversation in page]
    # A clicked chip reads "clicked <intent>", not the "/intent" it sent; a typed pick reads as typed.
    last_texts = {
        turn_id: f"clicked {intent}"
        if served_by == SUGGESTION_ARM and intent and CHIP_PAYLOAD.match(text)
        else text
        for turn_id, text, served_by, intent in session.execute(
            select(Turn.id, Turn.user_text, Turn.served_by, Turn.intent).where(
                Turn.id.in_(
                    [
                        i
                        for _, c in rows
                        if c is not None
                        for i in (c.last_turn, c.last_question)
                        if i is not None
                    ]
                )
            )
        )
    }
    last_sender = last_live_senders(session, [conversation.id for conversation in page])
    matches = _search_matches(session, [c.id for c in page], search) if search.strip() else {}
    summaries = [
        ConversationSummary(
            id=conversation.id,
            channel=conversation.channel,
            created_at=conversation.created_at,
            last_activity_at=conversation.last_activity_at,
            turns=int(count.turns) if count is not None else 0,
            handoff_turns=int(count.handoff_turns or 0) if count is not None else 0,
            unhelpful=int(count.unhelpful or 0) if count is not None else 0,
            handoff_requested=conversation.handoff_requested_at is not None,
            closed_by=conversation.handoff_closed_by if conversation.handoff_closed_at else None,
            last_message=last_texts.get(count.last_turn, "") if count is not None else "",
            contact=conversation.contact,
            agent=conversation.agent if agent_active(conversation) else None,
            customer_wrote_last=last_sender.get(conversation.id) == "customer",
            rating=conversation.rating,
            match=matches.get(conversation.id, (None, None))[0],
            match_turn=matches.get(conversation.id, (None, None))[1],
            asked_again=int(count.asked_again or 0) if count is not None else 0,
            question=last_texts.get(count.last_question)
            if count is not None and count.last_question not in (None, count.last_turn)
            else None,
            page=conversation.page_url,
        )
        for conversation, count in rows
    ]
    return summaries, int(total)


def _search_matches(
    session: Session, conversation_ids: list[str], search: str
) -> dict[str, tuple[str, int | None]]:
    """For a page of search results, each conversation's newest customer message that holds the words (a
    turn, else a live-chat message) and its turn id: what the list shows instead of the last message. Only
    the page's own messages are read."""
    words = re.compile(re.escape(search.strip()), re.IGNORECASE)
    found: dict[str, tuple[str, int | None]] = {}
    turns = select(Turn.conversation_id, Turn.id, Turn.user_text).where(
        Turn.conversation_id.in_(conversation_ids), Turn.served_by != SUGGESTION_ARM
    )
    for conversation_id, turn_id, typed in session.execute(turns.order_by(Turn.id.desc())):
        if conversation_id not in found and words.search(typed):
            found[conversation_id] = (typed, turn_id)
    live = select(ConversationMessage.conversation_id, ConversationMessage.text).where(
        ConversationMessage.conversation_id.in_([c for c in conversation_ids if c not in found]),
        ConversationMessage.sender == "customer",
    )
    for conversation_id, typed in session.execute(live.order_by(ConversationMessage.id.desc())):
        if conversation_id not in found and words.search(typed):
            found[conversation_id] = (typed, None)
    return found


def current_deployment(session: Session) -> Deployment | None:
    return session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(1)).first()


def model_by_version(session: Session, *, version: str, for_update: bool = False) -> ModelVersion:
    """``for_update``: lock the row (PostgreSQL) until the transaction ends, so a concurrent prune
    (training.model_retention) and a deployment of the same version serialise."""
    query = select(ModelVersion).where(ModelVersion.version == version)
    row = session.scalars(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFoundError(f"model version {version} is not registered")
    return row


def set_deployment(
    session: Session,
    *,
    production_version: str,
    canary_version: str | None = None,
    canary_share: float = 0.0,
    shadow_version: str | None = None,
    actor: str,
    reason: str,
) -> Deployment:
    """Record what serves traffic from now on (every web worker follows the newest row). A version whose
    bundle was pruned is refused."""
    for version in filter(None, (production_version, canary_version, shadow_version)):
        model = model_by_version(session, version=version, for_update=True)
        if model.pruned_at is not None:
            raise ValueError(
                f"model version {version} was pruned on {model.pruned_at:%Y-%m-%d %H:%M} UTC by "
                f"{model.pruned_by} (its bundle is deleted): build a new model instead"
            )
    if not 0.0 <= canary_share <= 1.0:
        raise ValueError(f"canary_share must be in [0, 1], not {canary_share}")
    if canary_version is None and canary_share:
        raise ValueError("canary_share needs a canary_version")
    previous = current_deployment(session)
    row = Deployment(
        production_version=production_version,
        canary_version=canary_version,
        canary_share=canary_share,
        shadow_version=shadow_version,
        actor=actor,
        reason=reason[:500],
    )
    session.add(row)
    session.flush()
    before = f" (was {describe_deployment(previous)})" if previous is not None else ""
    emit(
        session,
        "deployment.changed",
        f"Deployment changed by {actor}: {describe_deployment(row)}{before}. "
        f"Reason: {reason or 'none given'}",
        path="/operator/runs",
        data={
            "deployment_id": row.id,
            "actor": actor,
            "reason": row.reason,
            "now": deployment_state(row),
            "before": deployment_state(previous) if previous is not None else None,
        },
    )
    return row


def deployment_state(row: Deployment) -> dict[str, Any]:
    return {
        "production": row.production_version,
        "canary": row.canary_version,
        "canary_share": row.canary_share,
        "shadow": row.shadow_version,
    }


def describe_deployment(row: Deployment) -> str:
    """One line: ``production v3, canary v4 on 10% of sessions, shadow v5``."""
    parts = [f"production {row.production_version}"]
    if row.canary_version:
        parts.append(f"canary {row.canary_version} on {row.canary_share:.0%} of sessions")
    if row.shadow_version:
        parts.append(f"shadow {row.shadow_version}")
    return ", ".join(parts)


def current_answer_policy(session: Session) -> AnswerPolicy | None:
    return session.scalars(select(AnswerPolicy).order_by(AnswerPolicy.id.desc()).limit(1)).first()


def answer_policy_history(session: Session, *, limit: int = 20) -> list[AnswerPolicy]:
    return list(session.scalars(select(AnswerPolicy).order_by(AnswerPolicy.id.desc()).limit(limit)))


def record_answer_policy(
    session: Session, *, target_precision: float | None, actor: str, reason: str
) -> AnswerPolicy:
    """Store the precision the serving models answer at from now on (None: as each was built)."""
    if target_precision is not None and not 0.5 <= target_precision < 1.0:
        raise ValueError(f"target precision must be in [0.5, 1), not {target_precision}")
    row = AnswerPolicy(target_precision=target_precision, actor=actor[:100], reason=reason.strip()[:500])
    session.add(row)
    session.flush()
    return row


def serving_plan(session: Session) -> dict[str, Any] | None:
    """Versions and bundle paths to serve: the newest deployment, or else the newest registered model; and
    the precision an operator asked the models to answer at (``target_precision``, None: as built)."""
    policy = current_answer_policy(session)
    target = policy.target_precision if policy is not None else None
    deployment = current_deployment(session)
    if deployment is None:
        latest = latest_model_version(session)
        if latest is None:
            return None
        return {
            "production": (latest.version, latest.bundle_path),
            "canary": None,
            "canary_share": 0.0,
            "shadow": None,
            "deployment_id": None,
            "target_precision": target,
        }

    def locate(version: str | None) -> tuple[str, str] | None:
        if version is None:
            return None
        return version, model_by_version(session, version=version).bundle_path

    return {
        "production": locate(deployment.production_version),
        "canary": locate(deployment.canary_version),
        "canary_share": deployment.canary_share,
        "shadow": locate(deployment.shadow_version),
        "deployment_id": deployment.id,
        "target_precision": target,
    }


# ----------------------------------------------------------------------------------------- traffic trend


@dataclass
class DayTraffic:
    day: date
    answered: int = 0
    clarify: int = 0
    handoff: int = 0
    off_topic: int = 0  # declined as off the knowledge base's topic (bot.handoff.OFF_TOPIC)
    unhelpful: int = 0  # thumbs-down
    picked: int = 0  # clarify turns the customer answered by clicking one of the "did you mean" chips
    promoted: list[str] = field(default_factory=list)  # model versions that became production that day

    @property
    def turns(self) -> int:
        return self.answered + self.clarify + self.handoff + self.off_topic

    @property
    def answered_share(self) -> float:
        return self.answered / self.turns if self.turns else 0.0

    @property
    def resolved_share(self) -> float:
        """Answered at once, or after the customer picked one of the bot's "did you mean" choices."""
        return (self.answered + self.picked) / self.turns if self.turns else 0.0


DRAWN_STATUSES = ("answered", "clarify", "handoff", "off_topic")  # the 30-day chart's segments


def daily_traffic(session: Session, *, days: int = 30, now: datetime | None = None) -> list[DayTraffic]:
    """Turns per UTC day by status, thumbs-down, "did you mean" choices and promotions, for the last ``days``
    days (oldest first, every day present): is the bot answering more of its traffic as it learns from it? One
    grouped query. A clicked chip's own turn is not a question and is left out."""
    now = now or utcnow()
    first = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    bind = session.get_bind()
    # UTC days whatever the PostgreSQL session's time zone (SQLite stores UTC text already).
    utc = func.timezone("UTC", Turn.created_at) if bind.dialect.name == "postgresql" else Turn.created_at
    bucket = func.date(utc)
    rows = session.execute(
        select(
            bucket,
            Turn.status,
            func.count(),
            func.sum(case((Turn.helpful.is_(False), 1), else_=0)),
            func.sum(case((Turn.chosen_intent.is_not(None), 1), else_=0)),
        )
        .where(
            # The statuses drawn, named: the figures' index then reads each one's period alone (without
            # them, every turn ever logged).
            Turn.status.in_(DRAWN_STATUSES),
            Turn.created_at >= since,
            Turn.served_by != SUGGESTION_ARM,
        )
        .group_by(bucket, Turn.status)
    ).all()
    out = {first + timedelta(days=i): DayTraffic(first + timedelta(days=i)) for i in range(days)}
    for day_value, status, count, unhelpful, picked in rows:
        day = day_value if isinstance(day_value, date) else date.fromisoformat(str(day_value)[:10])
        if day not in out:
            continue
        setattr(out[day], status, getattr(out[day], status) + int(count))
        out[day].unhelpful += int(unhelpful or 0)
        out[day].picked += int(picked or 0)
    previous = session.scalar(
        select(Deployment.production_version)
        .where(Deployment.created_at < since)
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    for version, created in session.execute(
        select(Deployment.production_version, Deployment.created_at)
        .where(Deployment.created_at >= since)
        .order_by(Deployment.id)
    ):
        if version != previous and created.date() in out:
            out[created.date()].promoted.append(version)
        previous = version
    return list(out.values())
