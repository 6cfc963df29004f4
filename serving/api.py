"""Chat API, version 1: thin handlers -> validation -> domain functions (the same ones the CLI uses)."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.choice import MAX_WORDS as MAX_CHOICE_WORDS
from bot.choice import NONE_OF_THESE, WHICH_ONE, read_choice
from bot.engine import (
    ANSWERED,
    HANDOFF,
    AnsweringEngine,
    Candidate,
    MetadataFilter,
    Prediction,
    in_context,
)
from bot.follow_up import WHAT_NEXT, Earlier, read_follow_up, refers_back
from bot.handoff import ASKED_FOR_PERSON, OFF_TOPIC, asks_for_person, escalates, logged_status, reply_status
from bot.language import declined_in_language, other_language_reply
from bot.message_rules import choices_after_wrong, read_message
from bot.multi_question import with_other_questions
from bot.repetition import Repetition, again_text, passed_on, repetition
from bot.small_talk import (
    ACKNOWLEDGEMENT,
    AFTER_ANSWER,
    AFTER_ANYTHING_ELSE,
    AFTER_NOTHING,
    HELP,
    acknowledgement_reply,
    small_talk_prediction,
)
from core import channels, presence
from core.kb_files import MAX_METADATA_PAIRS, MAX_METADATA_VALUE
from core.models import Conversation, ConversationMessage, Turn, new_uuid, utcnow
from core.pages import Page, PageError, read_page
from core.redaction import redact
from core.registry import (
    CHIP_PAYLOAD,
    CHOICE_COLUMNS,
    LOW_RATING,
    RATING_COMMENT_LIMIT,
    SUGGESTION_ARM,
    ContactError,
    EarlierQuestion,
    NotFoundError,
    NothingToRate,
    RatingError,
    agent_active,
    customer_message,
    earlier_question,
    get_conversation,
    get_or_create_conversation,
    handoff_open,
    last_answer,
    last_answer_to_rate,
    last_live_senders,
    latest_turn,
    leave_contact,
    log_turn,
    messages_after,
    offering_turn,
    on_page,
    open_choices,
    question_behind,
    rate_chat,
    record_choice,
    record_declined,
    record_feedback,
    request_handoff,
    shown_suggestions,
)
from core.settings import Settings
from core.team_hours import when_back
from crowd_feedback.review import review_reasons
from crowd_feedback.reviewers import operators_online
from serving.app import db_session, limiter, state
from serving.errors import APIError

api = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _chat_limit() -> str:
    return state().settings.chat_rate_limit


def json_body() -> dict[str, Any]:
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise APIError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the JSON body must be an object")
    return body


def text_field(body: dict[str, Any], name: str, *, limit: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise APIError(400, "missing_field", f"'{name}' is required", name)
        return None
    if not isinstance(value, str):
        raise APIError(400, "invalid_type", f"'{name}' must be a string", name)
    value = value.strip()
    if required and not value:
        raise APIError(400, "empty_field", f"'{name}' must not be empty", name)
    if len(value) > limit:
        raise APIError(400, "too_long", f"'{name}' is {len(value)} characters; the limit is {limit}", name)
    return value


def external_session_id(sender: str, channel: str) -> str:
    """The conversation of a user another system named (Rasa's ``sender``, Azure's ``userId``): the name
    itself when it is a valid session id, else ``channel-`` and its letters, digits, '-' and '_'
    (at least 8)."""
    if SESSION_ID.match(sender):
        return sender
    cleaned = f"{channel}-" + "".join(ch for ch in sender if ch.isascii() and (ch.isalnum() or ch in "-_"))
    return cleaned[:64].ljust(8, "0")


def session_field(body: dict[str, Any]) -> str | None:
    value = body.get("session_id")
    if value is None:
        return None
    if not isinstance(value, str) or not SESSION_ID.match(value):
        raise APIError(
            400, "invalid_session_id", "'session_id' must be 8-64 letters, digits, '-' or '_'", "session_id"
        )
    return value


def metadata_filter(
    pairs: list[tuple[Any, Any]], field: str, *, any_of: bool = False
) -> MetadataFilter | None:
    """Key-value pairs a request restricts its answer by, checked against what an intent can carry
    (core.kb_files' limits on intent metadata); None for none."""
    if len(pairs) > MAX_METADATA_PAIRS:
        raise APIError(400, "invalid_value", f"'{field}' has more than {MAX_METADATA_PAIRS} pairs", field)
    for key, value in pairs:
        for part in (key, value):
            if not isinstance(part, str) or not part.strip() or len(part) > MAX_METADATA_VALUE:
                raise APIError(
                    400,
                    "invalid_value",
                    f"'{field}' keys and values must be non-empty strings of at most {MAX_METADATA_VALUE} "
                    "characters",
                    field,
                )
    return MetadataFilter.of(pairs, any_of=any_of) if pairs else None


def page_field(body: dict[str, Any]) -> Page | None:
    """The chat API's ``page``: the address of the web page the widget is on (core.pages), kept with the
    conversation without its query or fragment."""
    value = body.get("page")
    if value is None:
        return None
    if not isinstance(value, str):
        raise APIError(400, "invalid_type", "'page' must be a string", "page")
    try:
        return read_page(value)
    except PageError as exc:
        raise APIError(400, "invalid_page", f"'page': {exc}", "page") from None


def chat_metadata_field(body: dict[str, Any]) -> MetadataFilter | None:
    """The chat API's ``metadata``: ``{"key": "value", ...}``; only intents with every pair answer."""
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise APIError(400, "invalid_type", "'metadata' must be an object of key: value", "metadata")
    return metadata_filter(list(value.items()), "metadata")


def suggestion_payload(candidates: list[Candidate]) -> list[dict[str, str]]:
    return [{"intent": c.intent, "title": c.title} for c in candidates]


def reply_text(prediction: Prediction) -> str:
    settings = state().settings
    return prediction.reply(**settings.replies)


def chosen_intent(engine: AnsweringEngine, message: str, typed: str | None = None) -> Prediction | None:
    """A clicked suggestion ("/intent"), or ``typed``, the intent a typed answer to the choices picked
    ("the first one", bot.choice): answer that intent without guessing."""
    match = CHIP_PAYLOAD.match(message)  # a clicked chip: answer that intent directly
    intent = typed or (match.group(1) if match else None)
    if intent is None or intent not in engine.knowledge:
        return None
    info = engine.knowledge[intent]
    return Prediction(
        text=message,
        status=ANSWERED,
        intent=intent,
        answer=info.answer,
        confidence=1.0,
        margin=1.0,
        ranking=[Candidate(intent, 1.0, info.title)],
        member_scores={},
        suggestions=engine.chips(info.follow_ups),
        model_version=engine.version,
    )


def offered_choices(session: Session, conversation_id: str, message: str) -> list[str]:
    """The choices the conversation's latest reply offered and none was taken yet, for a message short enough
    to answer them (bot.choice); empty otherwise, without a look at the log."""
    if len(message.split()) > MAX_CHOICE_WORDS or CHIP_PAYLOAD.match(message):
        return []
    return open_choices(offering_turn(session, conversation_id=conversation_id, columns=CHOICE_COLUMNS))


def reply_before(session: Session, conversation_id: str | None, settings: Settings) -> str:
    """What the conversation's latest reply was, for an acknowledgement ("ok", "yes"; bot.small_talk
    ``acknowledgement_reply``): an answer or anything but small talk; the bot's "anything else?" or goodbye
    (the replies to a thanks, a nod, a goodbye); or nothing to acknowledge (no reply yet, or other small
    talk: a greeting asks for a question)."""
    latest = (
        latest_turn(session, conversation_id=conversation_id, columns=(Turn.status, Turn.answer))
        if conversation_id is not None
        else None
    )
    session.commit()  # end the read transaction: the write comes later
    if latest is None:
        return AFTER_NOTHING
    if latest.status != "small_talk":
        return AFTER_ANSWER
    closing = (settings.small_talk_thanks, settings.small_talk_acknowledgement, settings.small_talk_goodbye)
    return AFTER_ANYTHING_ELSE if latest.answer in closing else AFTER_NOTHING


def typed_choice(engine: AnsweringEngine, message: str, offered: list[str]) -> str | None:
    """What ``message`` picks of the ``offered`` choices (bot.choice.read_choice: an intent,
    ``NONE_OF_THESE``), or None."""
    knowledge = engine.knowledge
    return read_choice(message, [(i, knowledge[i].title) for i in offered if i in knowledge])


@dataclasses.dataclass(frozen=True)
class ChatTurn:
    """A message answered and logged (``answer_message``): the prediction, the turn's id, the conversation's
    id, the text shown, the turn a typed "that's wrong" rated unhelpful (or None), whether the customer
    asked again for the answer just given (bot.repetition: given again with the offer of a person), and
    whether they asked for it once more than the limit (passed to a person instead)."""

    prediction: Prediction
    turn_id: int
    session_id: str
    text: str
    rated_turn_id: int | None
    asked_again: bool
    passed_on: bool = False
    team_back: datetime | None = None  # handed to a person outside the team's hours: when they are back


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a person can join a chat now (an operator has a page open), and, when nobody can and the
    team's hours (``HELPLOOP_TEAM_HOURS``) say it is away, when they begin again."""

    online: bool
    back: datetime | None = None


def team_availability(session: Session, settings: Settings) -> Availability:
    if operators_online(session, within_seconds=settings.presence_seconds) > 0:
        return Availability(True)
    hours = settings.team_schedule
    return Availability(False, hours.back_at(utcnow()) if hours is not None else None)


def away_text(settings: Settings, back: datetime, *, on_app: bool = False) -> str:
    """``HELPLOOP_HANDOFF_AWAY_MESSAGE`` with ``{back}`` as "tomorrow at 09:00 GMT" (on a messaging app,
    where the team can write back in the chat, ``HELPLOOP_CHANNEL_HANDOFF_AWAY_MESSAGE``)."""
    line = settings.channel_handoff_away_message if on_app else settings.handoff_away_message
    return line.replace("{back}", when_back(back, utcnow()))


def handoff_text(settings: Settings, available: Availability, *, on_app: bool = False) -> str:
    """The reply to a customer who asked for a person: someone will take over, the team is away until …,
    or nobody is online now. ``on_app``: on a messaging app the team replies in the chat itself, so the
    customer is not asked for an e-mail address or phone number."""
    if available.online:
        return settings.handoff_requested_message
    if available.back is not None:
        return away_text(settings, available.back, on_app=on_app)
    return settings.channel_handoff_offline_message if on_app else settings.handoff_offline_message


def reply_choices(prediction: Prediction, asked_again: bool, settings: Settings) -> list[dict[str, str]]:
    """The buttons under a reply on a channel that shows them (Rasa's, a messaging app's): the suggestions,
    each sending ``/intent`` back, and, when the message was declined or the answer asked for again, a
    person one click away, as the widget's button (its label, sent back, is a typed request for one)."""
    buttons = [{"title": c.title, "payload": f"/{c.intent}"} for c in prediction.suggestions]
    if prediction.off_topic or asked_again:
        buttons += person_choice(settings)
    return buttons


def person_choice(settings: Settings) -> list[dict[str, str]]:
    """The "Talk to a person" button, when its label, sent back, is read as a request for one."""
    label = settings.talk_to_person_label
    if settings.handoff_requests and asks_for_person(label, settings.handoff_request_regex):
        return [{"title": label, "payload": label}]
    return []


def answer_message(
    message: str,
    session_id: str | None,
    *,
    channel: str,
    create_unknown_session: bool = False,
    only: MetadataFilter | None = None,
    reply_by_channel: bool = False,
    page: Page | None = None,
) -> ChatTurn:
    """Predict, log the turn (committed before the caller responds), return what was said. Shared by the
    JSON API and the Rasa and Azure channels. ``only``: answer from the intents whose metadata match it (the
    widget's page, Azure's ``filters``). ``reply_by_channel``: the reply is also put in the messaging app's
    outbox (core.channels), in the turn's transaction. ``page``: the web page the widget is on, kept with
    the conversation."""
    helploop = state()
    serving = helploop.models.state
    if serving.production is None:
        raise APIError(503, "model_unavailable", "the model is still loading; try again in a few seconds")
    session = db_session()
    settings = helploop.settings
    reading = read_message(message, **settings.message_rules)
    earlier: Earlier | None = None
    offered: list[str] = []  # "did you mean" choices still open, to be answered by typing
    if session_id is not None:
        if not create_unknown_session:
            try:
                get_conversation(session, conversation_id=session_id)
            except NotFoundError:
                raise APIError(
                    404, "unknown_session", f"session {session_id} does not exist", "session_id"
                ) from None
        if settings.follow_ups and refers_back(reading.question):
            # the question before, for a follow-up ("is there a charge for that?"); only then looked up
            since = utcnow() - timedelta(minutes=settings.follow_up_minutes)
            earlier = earlier_reading(
                earlier_question(session, conversation_id=session_id, since=since), settings
            )
        if settings.typed_choices:
            offered = offered_choices(session, session_id, message)
        session.commit()  # end the read transaction: the model runs outside any database transaction
    conversation_id = session_id or new_uuid()
    engine, arm = serving.engine_for(conversation_id)
    started = time.perf_counter()
    # "The first one", "pending transfer", "none of these" right after "did you mean": the customer's choice,
    # typed (bot.choice); a picked intent is answered as its clicked chip would be.
    typed = typed_choice(engine, message, offered) if offered else None
    prediction = chosen_intent(engine, message, None if typed in (NONE_OF_THESE, WHICH_ONE) else typed)
    # "Can I talk to a human?" is the "Talk to a person" button typed: the same reply and the same inbox
    # entry, and nothing for reviewers to label (the model's candidates are still logged). "Hi" or "thanks"
    # is small talk: the deployment's reply, and the model is not asked. Neither is a question for review.
    # Around a question ("Hi! Where is my card? Thanks"), the model reads the question alone. "That's wrong"
    # right after an answer is the thumbs-down typed: the answer is rated unhelpful (a review item) and the
    # intents the model ranked next for it are offered; around a new question, that question is answered.
    requested = chit_chat = False
    team_back: datetime | None = None  # handed to a person outside the team's hours: when they are back
    context: str | None = None  # the earlier question a follow-up was read with
    complained: int | None = None  # "that's wrong": the answer it is about, rated unhelpful below
    if prediction is not None:
        arm = SUGGESTION_ARM
    elif typed == NONE_OF_THESE:  # none of the choices: the question is for a person, as if asked for
        requested = True
        prediction = small_talk_prediction(message, "", engine.version)
    elif typed == WHICH_ONE:  # "yes" to several choices: which one? The same chips, still to be answered
        chit_chat = True
        prediction = dataclasses.replace(
            small_talk_prediction(message, settings.small_talk_reply(WHICH_ONE), engine.version),
            suggestions=engine.chips(offered),
        )
    else:
        requested = reading.asks_for_person
        alternatives: list[Candidate] = []
        if reading.complaint:  # alone, or around a new question ("No, not what I asked. Where is my card?")
            last = last_answer_to_rate(session, conversation_id=session_id) if session_id else None
            if last is not None:
                complained, alternatives = last.id, other_choices(last, engine)
            session.commit()
        kind = reading.small_talk_reply(answer_to_rate=complained is not None)
        if kind == ACKNOWLEDGEMENT:  # "ok", "yes": after an answer, or after "anything else?" (a yes: go on)
            kind = acknowledgement_reply(message, reply_before(session, session_id, settings))
        if kind is None and earlier is None and settings.small_talk and WHAT_NEXT.match(reading.question):
            kind = HELP  # "what should I do now?" with no question before it: what the bot can do
        chit_chat = kind is not None
        if kind is not None:
            reply = settings.small_talk_reply(kind)
            if alternatives:  # "... ask for a person. Did you mean one of these?" and the chips
                reply = f"{reply} {settings.clarify_message}"
            prediction = small_talk_prediction(message, reply, engine.version)
            prediction = dataclasses.replace(prediction, suggestions=alternatives)
        else:
            followed = read_follow_up(engine, reading.question, earlier=earlier, only=only)
            prediction, context = followed.prediction, followed.context
            if settings.multi_questions and context is None:  # "…? Also, how do I …?": a chip for each
                prediction = with_other_questions(engine, prediction, only=only)
            # "I want to make a complaint" the bot cannot answer, or "this is ridiculous" it would decline
            # as off its topic: a person takes it, as if asked for (bot.handoff.escalates).
            requested = requested or escalates(reading.escalation, prediction)
    latency_ms = (time.perf_counter() - started) * 1000
    # The answer the conversation's last reply gave, asked for again ("it's been three weeks, where is it?"
    # after the delivery answer): given again with the offer of a person, or, asked for once more than the
    # limit, the conversation goes to a person (bot.repetition). A clicked chip is the customer's own pick.
    repeat = None
    if session_id is not None and prediction.status == ANSWERED and arm != SUGGESTION_ARM:
        if not (requested or chit_chat) and settings.same_answer_limit:
            repeat = repeated_answer(session, session_id, prediction, settings)
    if repeat is not None and repeat.passed_on:
        prediction = passed_on(prediction)
    if requested:
        context = None  # no question for the bot, whatever it refers to
        prediction = dataclasses.replace(
            prediction, status=HANDOFF, intent=None, answer="", suggestions=[], unfamiliar=False, vague=False
        )
        available = team_availability(session, settings)
        session.commit()  # end the read transaction before the write below
        text, team_back = handoff_text(settings, available, on_app=reply_by_channel), available.back
    else:
        text = reply_text(prediction)
    asked_again = repeat is not None and not repeat.passed_on
    if asked_again:
        text = again_text(text, settings.asked_again_message)
    elif repeat is not None:  # passed on: the bot says why, not that it did not understand
        text = settings.same_answer_handoff_message
    # Declined as off its topic and written in another language ("Wo ist meine Karte?"): the customer is told
    # the bot answers in the knowledge base's language (bot.language), not that it has no answer.
    language = None if requested else declined_in_language(prediction, message, settings.language)
    if language is not None:
        text = other_language_reply(language, settings.other_language_message, expected=settings.language)
    # Off the knowledge base's topic (below the model's familiarity floor): declined, passed to nobody.
    logged = logged_status(prediction, asked_for_person=requested)
    if logged == HANDOFF and settings.team_schedule is not None:
        # The bot's own handoff outside the team's hours: its line, then when the team is back.
        available = team_availability(session, settings)
        session.commit()
        if available.back is not None:
            away = away_text(settings, available.back, on_app=reply_by_channel)
            text, team_back = f"{text} {away}", available.back
    # One short write transaction per turn, serialised per process on SQLite (its busy handler sleeps in
    # steps of up to 100 ms when two threads write at once).
    with helploop.write_lock:
        conversation = get_or_create_conversation(
            session, conversation_id=conversation_id, channel=channel, page=page
        )
        news = (  # only looked up when someone is to be told: nothing added to a default chat turn
            helploop.notifier.enabled
            and logged in (HANDOFF, ASKED_FOR_PERSON)
            and not handoff_open(session, conversation_id=conversation.id)
        )
        choice = (
            record_choice(session, conversation_id=conversation.id, intent=str(prediction.intent))
            if arm == SUGGESTION_ARM
            else None
        )
        if requested:
            request_handoff(session, conversation_id=conversation.id)
        declined = (  # remembered on the turn that offered the choices
            record_declined(session, conversation_id=conversation.id) if typed == NONE_OF_THESE else None
        )
        if complained is not None:  # the thumbs-down, typed: the same mark and the same review item
            record_feedback(session, turn_id=complained, helpful=False, comment=message)
        turn = log_turn(
            session,
            conversation_id=conversation.id,
            user_text=message,
            status=logged,
            intent=prediction.intent,
            answer=text,
            confidence=min(max(prediction.confidence, 0.0), 1.0),
            candidates=[c.to_dict() for c in prediction.ranking],
            member_scores=prediction.member_scores,
            model_version=prediction.model_version,
            latency_ms=latency_ms,
            served_by=arm,
            suggested=[c.intent for c in prediction.suggestions],
            rated_turn_id=complained
            if chit_chat
            else None,  # "that's wrong" alone: its chips answer that turn
            metadata_filter=(
                only.to_dict()
                | {
                    "candidates": [c.to_dict() for c in prediction.unfiltered],
                    "confidence": prediction.unfiltered_confidence,
                }
                if only is not None and arm != SUGGESTION_ARM
                else None
            ),
            kept_from=prediction.kept_from,  # None on a clicked chip: the model was not asked
            context_text=context,
            off_topic=logged == OFF_TOPIC,
            read_as=prediction.read_as,  # misspelt words read as the knowledge base's own
            vague=prediction.vague,  # a keyword message asked about (bot.keywords)
            ruled_out=prediction.ruled_out,  # the intent the customer said it is not (bot.negation)
            language=language,  # declined, and written in another language
            asked_again=repeat.times if repeat is not None else None,
            page=page.url if page is not None else None,  # the conversation keeps only the latest
        )
        if reply_by_channel:
            payload = {
                "text": text,
                "choices": reply_choices(prediction, asked_again, settings),
                "turn_id": turn.id,
                "thumbs": logged == ANSWERED,  # an answer to rate
            }
            channels.queue(session, conversation_id=conversation.id, payload=payload)
        session.commit()
    helploop.metrics.turns.labels(status=logged, arm=arm).inc()
    if context is not None:
        helploop.metrics.follow_ups.labels(status=logged).inc()
    if logged == OFF_TOPIC:
        helploop.metrics.off_topic.labels(arm=arm).inc()
    if language is not None:
        helploop.metrics.other_language.labels(language=language).inc()
    if prediction.vague:
        helploop.metrics.keyword_asked.labels(arm=arm).inc()
    if repeat is not None:
        helploop.metrics.asked_again.labels(outcome=logged).inc()
    if choice is not None and not choice.after_complaint:
        helploop.metrics.clarify_choices.labels(rank=str(choice.rank)).inc()
    if declined is not None and declined.rated_turn_id is None:  # "none of these" after "did you mean"
        helploop.metrics.clarify_choices.labels(rank="none").inc()
    if complained is not None:
        route_thumbs_down(complained)
    if news:
        reason = "asked" if requested else "bot"
        helploop.notifier.notify(
            session_id=conversation.id, reason=reason, message=redact(message), page=conversation.page_url
        )
    if serving.shadow is not None and arm != SUGGESTION_ARM and not chit_chat and typed != NONE_OF_THESE:
        helploop.shadow.submit(serving.shadow, turn.id, reading.question, only, earlier=earlier)
    if arm != SUGGESTION_ARM and not requested and not chit_chat:
        reasons = review_reasons(
            status=logged,
            members_disagree=prediction.members_disagree,
            audit_draw=random.random(),
            policy=helploop.policy,
            asked_again=repeat is not None,
        )
        # A follow-up read with the question before it joins no look-alike (its words alone say little):
        # it is reviewed with the earlier turns on its own item.
        helploop.router.submit(turn.id, reasons, prediction.embedding if context is None else None)
    handed_over = repeat is not None and repeat.passed_on
    return ChatTurn(
        prediction, turn.id, conversation.id, text, complained, asked_again, handed_over, team_back
    )


def repeated_answer(
    session: Session, session_id: str, prediction: Prediction, settings: Settings
) -> Repetition | None:
    """What an answer is when the conversation's last answer, given within follow_up_minutes with only small
    talk after it, had the same intent (bot.repetition); None for a first answer."""
    since = utcnow() - timedelta(minutes=settings.follow_up_minutes)
    last = last_answer(session, conversation_id=session_id, since=since)
    session.commit()  # end the read transaction before the turn's write
    if last is None:
        return None
    return repetition(prediction.intent, last.intent, last.times, limit=settings.same_answer_limit)


def earlier_reading(question: EarlierQuestion | None, settings: Settings) -> Earlier | None:
    """The question before, as the model read it: without the small talk around it, after the earlier text it
    was itself read with (a follow-up's)."""
    if question is None:
        return None
    text = read_message(question.user_text, **settings.message_rules).question
    if question.context_text:
        text = in_context(question.context_text, text)
    return Earlier(text, question.intent)


def to_live_chat(
    message: str, session_id: str | None, page: Page | None = None
) -> ConversationMessage | None:
    """When an operator has taken the conversation over, the message is for them: stored in the live chat, no
    prediction, no turn, nothing for review. None when the bot should answer. (The lookup stays in the
    session's identity map, so ``answer_message`` does not query the conversation again.)"""
    if session_id is None:
        return None
    session = db_session()
    conversation = session.get(Conversation, session_id)
    if conversation is None or not agent_active(conversation):
        return None
    helploop = state()
    with helploop.write_lock:
        # News for the team only when the customer writes after the team did (not on every message of a
        # burst the operator has not answered yet).
        newest = (
            last_live_senders(session, [session_id]).get(session_id) if helploop.notifier.enabled else None
        )
        news = helploop.notifier.enabled and newest != "customer"
        stored = customer_message(session, conversation_id=session_id, text=message)
        on_page(conversation, page)  # the customer may move to another page while the team answers
        session.commit()
    helploop.metrics.live_chat_messages.labels(sender="customer").inc()
    if news:
        helploop.notifier.notify(
            session_id=session_id, reason="message", message=redact(message), page=conversation.page_url
        )
    return stored


def message_view(message: ConversationMessage) -> dict[str, Any]:
    """A live-chat message for the customer's side: the operator's account name is not shown."""
    return {
        "id": message.id,
        "created_at": message.created_at.isoformat(),
        "sender": message.sender,
        "text": message.text,
    }


@api.post("/chat")
@limiter.limit(_chat_limit)
def chat() -> Response:
    body = json_body()
    settings = state().settings
    message = text_field(body, "message", limit=settings.max_message_length)
    assert message is not None
    session_id = session_field(body)
    only = chat_metadata_field(body)
    page = page_field(body)
    live = to_live_chat(message, session_id, page)
    if live is not None:
        return jsonify(
            {
                "session_id": live.conversation_id,
                "turn_id": None,
                "message_id": live.id,
                "status": "agent",
                "answer": "",
                "intent": None,
                "confidence": 0.0,
                "suggestions": [],
                "asked_again": False,
                "model_version": None,
                "team_back": None,
            }
        )
    said = answer_message(message, session_id, channel="widget", only=only, page=page)
    prediction = said.prediction
    return jsonify(
        {
            "session_id": said.session_id,
            "turn_id": said.turn_id,
            # "that's wrong": the answer now rated unhelpful (its thumbs-down shown)
            "rated_turn_id": said.rated_turn_id,
            "status": logged_status(prediction),  # "off_topic": declined, passed to nobody (bot.handoff)
            "answer": said.text,
            "intent": prediction.intent,
            "confidence": round(prediction.confidence, 4),
            "suggestions": suggestion_payload(prediction.suggestions),
            # the answer just given, asked for again: the widget offers a person under it
            "asked_again": said.asked_again,
            "model_version": prediction.model_version,
            # handed to a person outside the team's hours (HELPLOOP_TEAM_HOURS): when they are back
            "team_back": said.team_back.isoformat() if said.team_back else None,
        }
    )


@api.post("/feedback")
@limiter.limit(_chat_limit)
def feedback() -> Response:
    body = json_body()
    turn_id = body.get("turn_id")
    if not isinstance(turn_id, int) or isinstance(turn_id, bool):
        raise APIError(400, "invalid_type", "'turn_id' must be an integer", "turn_id")
    helpful = body.get("helpful")
    if not isinstance(helpful, bool):
        raise APIError(400, "invalid_type", "'helpful' must be true or false", "helpful")
    comment = text_field(body, "comment", limit=2000, required=False)
    try:
        rated = rate_answer(turn_id, helpful, comment)
    except NotFoundError as exc:
        raise APIError(404, "unknown_turn", str(exc), "turn_id") from None
    return jsonify(
        {
            "turn_id": rated.turn_id,
            "helpful": rated.helpful,
            "reply": rated.reply,  # the bot's line after a thumbs-down (None after a thumbs-up)
            "suggestions": suggestion_payload(rated.others),
        }
    )


@dataclasses.dataclass(frozen=True)
class Rated:
    """A thumbs given (``rate_answer``): the bot's line after a thumbs-down and the intents it offers."""

    turn_id: int
    helpful: bool | None
    reply: str | None
    others: list[Candidate]


def rate_answer(turn_id: int, helpful: bool, comment: str | None = None) -> Rated:
    """Record a thumbs (the widget's, a messaging app's button) and route a thumbs-down. NotFoundError for
    an unknown turn."""
    session = db_session()
    turn = record_feedback(session, turn_id=turn_id, helpful=helpful, comment=comment)
    # A thumbs-down on an answer of the model's: what the typed "that's wrong" is offered, the intents the
    # model ranked next for that question (the right one among them for 85 % of wrong answers on BANKING77),
    # to pick from in one click, and a person (the widget's button under the reply).
    production = state().models.state.production
    others = (
        other_choices(turn, production)
        if not helpful and turn.status == ANSWERED and production is not None
        else []
    )
    session.commit()
    if helpful:
        state().metrics.feedback.labels(helpful="true").inc()
    else:
        route_thumbs_down(turn.id)
    settings = state().settings
    reply = None
    if not helpful:
        reply = settings.small_talk_not_helpful
        reply = f"{reply} {settings.clarify_message}" if others else reply
    return Rated(turn.id, turn.helpful, reply, others)


def route_thumbs_down(turn_id: int) -> None:
    """A thumbs-down (clicked, or typed: "that's wrong") is counted and puts the question it is about into
    review (``question_behind``: for a clicked "did you mean" chip, the question that offered it)."""
    helploop = state()
    helploop.metrics.feedback.labels(helpful="false").inc()
    session = db_session()
    question = question_behind(session, turn_id=turn_id)
    session.commit()
    production = helploop.models.state.production
    if production is not None and question is not None:
        # as the model read it (misspelt words corrected), like the vector a chat turn is routed with
        helploop.router.submit(question, ["thumbs_down"], lambda text: production.embed([text])[0])


def other_choices(turn: Turn, engine: AnsweringEngine) -> list[Candidate]:
    """After "that's wrong": the intents the model ranked next for that question (chips to pick from)."""
    names = [str(c.get("intent")) for c in turn.candidates or [] if c.get("intent") in engine.knowledge]
    return engine.chips(choices_after_wrong(names, turn.intent))


@api.get("/sessions/<session_id>")
def transcript(session_id: str) -> Response:
    if not SESSION_ID.match(session_id):
        raise APIError(400, "invalid_session_id", "malformed session id", "session_id")
    try:
        conversation = get_conversation(db_session(), conversation_id=session_id)
    except NotFoundError as exc:
        raise APIError(404, "unknown_session", str(exc), "session_id") from None
    production = state().models.state.production
    knowledge = production.knowledge if production is not None else {}
    turns = []
    for turn in conversation.turns:
        titles = {c.get("intent"): c.get("title") for c in turn.candidates}
        suggestions = [  # the chips the reply showed, so that a resumed conversation offers them again
            {
                "intent": name,
                "title": titles.get(name) or (knowledge[name].title if name in knowledge else name),
            }
            for name in shown_suggestions(turn)
        ]
        turns.append(
            {
                "turn_id": turn.id,
                "created_at": turn.created_at.isoformat(),
                "message": turn.user_text,
                "status": reply_status(turn.status),  # as the chat's reply said it
                "answer": turn.answer,
                "intent": turn.intent,
                "suggestions": suggestions,
                "chosen_intent": turn.chosen_intent,  # the "did you mean" choice the customer clicked
                "helpful": turn.helpful,
                "asked_again": turn.asked_again is not None and turn.status == ANSWERED,
            }
        )
    messages = messages_after(db_session(), conversation_id=conversation.id)  # the team's notes left out
    return jsonify(
        {
            "session_id": conversation.id,
            "created_at": conversation.created_at.isoformat(),
            "handoff_requested": conversation.handoff_requested_at is not None,
            "contact_left": conversation.contact is not None,
            "agent_active": agent_active(conversation),
            "waiting_for_person": handoff_open(db_session(), conversation_id=conversation.id),
            # the team chatted and the chat is over: the widget asks for a rating (unless it has one)
            "can_rate": not agent_active(conversation) and any(m.sender == "agent" for m in messages),
            "rating": conversation.rating,
            "turns": turns,
            "messages": [message_view(m) for m in messages],
        }
    )


@api.get("/sessions/<session_id>/messages")
@limiter.limit(lambda: state().settings.live_chat_poll_limit)
def live_messages(session_id: str) -> Response:
    """The live chat after a handoff, for the widget to poll: messages with an id above ``after``, whether a
    person is chatting now, and whether the conversation still waits for one."""
    if not SESSION_ID.match(session_id):
        raise APIError(400, "invalid_session_id", "malformed session id", "session_id")
    after = request.args.get("after", "0")
    if not after.isdigit() or len(after) > 18:
        raise APIError(400, "invalid_after", "'after' must be a message id (a whole number)", "after")
    session = db_session()
    try:
        conversation = get_conversation(session, conversation_id=session_id)
    except NotFoundError as exc:
        raise APIError(404, "unknown_session", str(exc), "session_id") from None
    messages = messages_after(session, conversation_id=session_id, after=int(after))
    waiting = handoff_open(session, conversation_id=conversation.id)
    return jsonify(
        {
            "session_id": conversation.id,
            "agent_active": agent_active(conversation),
            "waiting_for_person": waiting,
            # someone from the team is writing to them (core.presence): the widget shows the typing dots
            "agent_typing": waiting and presence.someone_typing(session, conversation_id=conversation.id),
            "messages": [message_view(m) for m in messages],
        }
    )


@api.post("/sessions/<session_id>/handoff")
@limiter.limit(_chat_limit)
def handoff(session_id: str) -> Response:
    if not SESSION_ID.match(session_id):
        raise APIError(400, "invalid_session_id", "malformed session id", "session_id")
    session = db_session()
    try:
        news = state().notifier.enabled and not handoff_open(session, conversation_id=session_id)
        conversation = request_handoff(session, conversation_id=session_id)
    except NotFoundError as exc:
        raise APIError(404, "unknown_session", str(exc), "session_id") from None
    settings = state().settings
    available = team_availability(session, settings)
    session.commit()
    if news:
        _notify(session, conversation, "asked")
    return jsonify(
        {
            "session_id": conversation.id,
            "handoff_requested": True,
            "people_online": available.online,
            # Honest about when: someone can join now, the team is back at a time (its hours), or later.
            "message": handoff_text(settings, available),
            "team_back": available.back.isoformat() if available.back else None,
        }
    )


@api.post("/sessions/<session_id>/contact")
@limiter.limit(_chat_limit)
def contact(session_id: str) -> Response:
    """After a handoff the widget asks how a person can reach the customer (e-mail or phone)."""
    if not SESSION_ID.match(session_id):
        raise APIError(400, "invalid_session_id", "malformed session id", "session_id")
    value = text_field(json_body(), "contact", limit=200, required=True) or ""
    session = db_session()
    try:
        conversation = leave_contact(session, conversation_id=session_id, contact=value)
    except NotFoundError as exc:
        raise APIError(404, "unknown_session", str(exc), "session_id") from None
    except ContactError as exc:
        raise APIError(400, "invalid_contact", str(exc), "contact") from None
    session.commit()
    _notify(session, conversation, "contact")
    return jsonify(
        {
            "session_id": conversation.id,
            "handoff_requested": True,
            "message": state().settings.contact_received_message,
        }
    )


@api.post("/sessions/<session_id>/rating")
@limiter.limit(_chat_limit)
def rating(session_id: str) -> Response:
    """The customer rates the live chat they had with the team (the widget asks when it ends)."""
    if not SESSION_ID.match(session_id):
        raise APIError(400, "invalid_session_id", "malformed session id", "session_id")
    body = json_body()
    comment = text_field(body, "comment", limit=RATING_COMMENT_LIMIT, required=False)
    session = db_session()
    try:
        conversation = rate_chat(
            session, conversation_id=session_id, rating=body.get("rating"), comment=comment
        )
    except NotFoundError as exc:
        raise APIError(404, "unknown_session", str(exc), "session_id") from None
    except NothingToRate as exc:
        raise APIError(409, "nothing_to_rate", str(exc), "session_id") from None
    except RatingError as exc:  # checked before the conversation is looked up
        raise APIError(400, "invalid_rating", str(exc), "rating") from None
    session.commit()
    chat_rated(conversation)
    return jsonify(
        {
            "session_id": conversation.id,
            "rating": conversation.rating,
            "message": state().settings.rating_received_message,
        }
    )


def chat_rated(conversation: Conversation) -> None:
    """After a rating of a live chat is committed (the widget's, or a messaging app's buttons): counted, and
    an unhappy customer goes to the handoff webhook while the team can still follow up."""
    value = int(conversation.rating or 0)
    state().metrics.chat_ratings.labels(rating=str(value)).inc()
    if value <= LOW_RATING:
        said = f"rated the chat {value} of 5" + (
            f": {conversation.rating_comment}" if conversation.rating_comment else ""
        )
        state().notifier.notify(
            session_id=conversation.id, reason="low_rating", message=redact(said), page=conversation.page_url
        )


def _notify(session: Session, conversation: Conversation, reason: str) -> None:
    """Queue the handoff webhook with the conversation's last typed message, redacted (a clicked chip's
    turn reads "/intent": the question before it says more)."""
    notifier = state().notifier
    if not notifier.enabled:
        return
    last = session.scalar(
        select(Turn.user_text)
        .where(Turn.conversation_id == conversation.id, Turn.served_by != SUGGESTION_ARM)
        .order_by(Turn.id.desc())
        .limit(1)
    )
    notifier.notify(
        session_id=conversation.id, reason=reason, message=redact(last or ""), page=conversation.page_url
    )


@api.after_request
def cors(response: Response) -> Response:
    origins = state().settings.widget_origin_set  # None: any site
    origin = request.headers.get("Origin")
    if origin and (origins is None or origin in origins):
        response.headers["Access-Control-Allow-Origin"] = origin if origins is not None else "*"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Vary"] = "Origin"
    elif origin and urlsplit(origin).netloc != request.host:  # this app's own pages need no permission
        # (the host alone: behind a proxy that ends TLS, the scheme this app sees can differ)
        refused_origin(origin)
    return response


REFUSED_LOGGED = 100  # sites a process names in its log, at most (the counter counts every call)


def refused_origin(origin: str) -> None:
    """A site's page called the chat API and HELPLOOP_WIDGET_ORIGINS does not allow it: the browser stops the
    widget there without a word to anyone, so the log names the site (once) and a counter counts."""
    helploop = state()
    helploop.metrics.refused_origins.inc()
    if origin not in helploop.refused_origins and len(helploop.refused_origins) < REFUSED_LOGGED:
        helploop.refused_origins.add(origin)
        log.warning(
            "the chat API was called from a page of %r, which HELPLOOP_WIDGET_ORIGINS does not allow: the "
            "browser stops the widget there (add the site to the setting if it is yours)",
            origin[:200],
        )
