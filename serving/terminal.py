"""Terminal chat: the same engine and turn log as the web channel, read from stdin."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, TextIO

from bot.choice import NONE_OF_THESE, WHICH_ONE, read_choice
from bot.engine import ANSWERED, CLARIFY, HANDOFF, SMALL_TALK, AnsweringEngine, Candidate, Prediction
from bot.follow_up import WHAT_NEXT, Earlier, read_follow_up
from bot.handoff import OFF_TOPIC, escalates, logged_status
from bot.language import check_language, declined_in_language, other_language_reply
from bot.message_rules import choices_after_wrong, read_message
from bot.multi_question import with_other_questions
from bot.repetition import again_text, passed_on, repetition
from bot.small_talk import (
    ACKNOWLEDGEMENT,
    AFTER_ANSWER,
    AFTER_ANYTHING_ELSE,
    AFTER_NOTHING,
    GOODBYE,
    HELP,
    NOT_HELPFUL,
    THANKS,
    acknowledgement_reply,
    small_talk_prediction,
)
from core.settings import Settings

# A typed request for a person: the web chat hands the conversation to the team; here nobody can take over.
NOBODY_HERE = (
    "[asked for a person: the web chat would hand this conversation to your team; the terminal cannot]"
)


def numbered(choices: list[Candidate]) -> str:
    lines = "\n".join(f"  {i}. {c.title}" for i, c in enumerate(choices, start=1))
    return f"{lines}\n(type a number to choose)"


def pending_choice(text: str, pending: Prediction | None, settings: Settings) -> str | None:
    """The intent a reply to the numbered choices picks ("2", "the first one", "pending transfer";
    bot.choice), ``NONE_OF_THESE``, ``WHICH_ONE`` (a yes to several), or None (a message for the model).
    With typed choices off, only a number picks."""
    if pending is None:
        return None
    shown = [(c.intent, c.title) for c in pending.suggestions]
    if settings.typed_choices:
        return read_choice(text, shown)
    return shown[int(text) - 1][0] if text.isdigit() and 1 <= int(text) <= len(shown) else None


def render(prediction: Prediction, settings: Settings) -> str:
    if prediction.status == CLARIFY:
        return f"Did you mean:\n{numbered(prediction.suggestions)}"
    if prediction.status == HANDOFF:  # the handoff line, or the off-topic one
        return prediction.reply(**settings.replies)
    text = prediction.answer or f"[{prediction.intent}]"
    if prediction.suggestions:
        text += "\nRelated: " + "; ".join(c.title for c in prediction.suggestions)
    return text


def run_terminal_chat(
    engine: AnsweringEngine,
    *,
    database: Any = None,
    settings: Settings,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    from core.registry import (
        get_or_create_conversation,
        log_turn,
        record_choice,
        record_declined,
        record_feedback,
    )

    check_language(settings.language)  # before the first message, not on the first declined one
    # Looked up per call, not bound at import: whoever swaps sys.stdin/stdout (a test runner) is followed.
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    conversation_id: str | None = None
    pending: Prediction | None = None
    answered: tuple[Prediction, int | None] | None = None  # the last reply, when an answer: (it, its turn id)
    earlier: Earlier | None = None  # the last question the model read, for a follow-up (bot.follow_up)
    last: tuple[str, int] | None = None  # the last answer's intent, and times given in a row (bot.repetition)
    after = AFTER_NOTHING  # what the last reply was, for an acknowledgement (bot.small_talk), as on the web
    stdout.write(f"HelpLoop ({engine.version}, {engine.runtime}). Ask a question; an empty line quits.\n")
    while True:
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
        if not line or not line.strip():
            break
        text = line.strip()[: settings.max_message_length]
        picked = pending_choice(text, pending, settings)
        if picked is not None and picked not in (NONE_OF_THESE, WHICH_ONE):
            chosen = picked
            after = AFTER_ANSWER
            stdout.write(engine.knowledge[chosen].answer + "\n")
            if earlier is not None:  # the question that offered the choice, answered with it
                earlier = Earlier(earlier.text, chosen)
            pending = answered = None
            last = (chosen, 1)  # the customer's own pick: an answer, never a repetition
            if database is not None and conversation_id is not None:
                with database.session() as session:  # the customer's answer to "did you mean", as on the web
                    record_choice(session, conversation_id=conversation_id, intent=chosen)
            continue
        declined = picked == NONE_OF_THESE  # "none of these": for a person, as if asked for (as on the web)
        reading = read_message(text, **settings.message_rules)
        complaint = answered if reading.complaint and not declined else None  # "that's wrong", as on the web
        kind = None if declined else reading.small_talk_reply(answer_to_rate=complaint is not None)
        if picked == WHICH_ONE:  # "yes" to several choices: which one? The same choices again
            kind = WHICH_ONE
        elif kind == ACKNOWLEDGEMENT:  # "ok", "yes": by the reply before it, as on the web
            kind = acknowledgement_reply(text, after)
        if kind is None and not declined and earlier is None and settings.small_talk:
            kind = HELP if WHAT_NEXT.match(reading.question) else None  # nothing before it: what the bot does
        context = None  # the earlier question a follow-up was read with
        requested = declined or reading.asks_for_person
        if declined:
            prediction = small_talk_prediction(text, "", engine.version)
        elif kind is not None:
            prediction = small_talk_prediction(text, settings.small_talk_reply(kind), engine.version)
            if kind == WHICH_ONE and pending is not None:
                prediction = dataclasses.replace(prediction, suggestions=pending.suggestions)
        else:
            followed = read_follow_up(
                engine, reading.question, earlier=earlier if settings.follow_ups else None
            )
            prediction, context = followed.prediction, followed.context
            if settings.multi_questions and context is None and not requested:
                prediction = with_other_questions(engine, prediction)  # "…? Also …?": as the web chat
            requested = requested or escalates(reading.escalation, prediction)  # a complaint: as on the web
            if requested:
                context = None  # no question for the bot, whatever it refers to
            else:
                intent = prediction.intent if prediction.status == ANSWERED else None
                earlier = Earlier(followed.read_text, intent)
        status = logged_status(prediction, asked_for_person=requested)
        # The last answer asked for again: given again with the offer of a person, or, once more than the
        # limit, passed to one (bot.repetition), as on the web
        repeat = None
        if status == ANSWERED and last is not None:
            repeat = repetition(prediction.intent, *last, limit=settings.same_answer_limit)
        if repeat is not None and repeat.passed_on:
            prediction = passed_on(prediction)
            status = logged_status(prediction)
            earlier = Earlier(earlier.text, None) if earlier is not None else None
        if requested:  # logged as the web chat logs it: the candidates, no answer
            prediction = dataclasses.replace(prediction, intent=None, answer="", suggestions=[], vague=False)
        if complaint is not None and kind == NOT_HELPFUL:  # the intents ranked next, to pick from
            wrong = complaint[0]
            names = choices_after_wrong([c.intent for c in wrong.ranking], wrong.intent)
            others = [c for c in wrong.ranking if c.intent in names]
            if others:
                reply = f"{prediction.answer} {settings.clarify_message}"
                prediction = dataclasses.replace(prediction, answer=reply, suggestions=others)
        # choices after "that's wrong", or the same choices again after "which one?"
        offering = kind in (NOT_HELPFUL, WHICH_ONE) and bool(prediction.suggestions)
        pending = prediction if status == CLARIFY or offering else None
        language = None if requested else declined_in_language(prediction, text, settings.language)
        if requested:
            shown = NOBODY_HERE
        elif offering:
            shown = f"{prediction.answer}\n{numbered(prediction.suggestions)}"
        elif repeat is not None and repeat.passed_on:  # as the web chat says it
            shown = settings.same_answer_handoff_message
        elif language is not None:  # declined, in another language: as the web chat says it
            shown = other_language_reply(
                language, settings.other_language_message, expected=settings.language
            )
        else:
            shown = render(prediction, settings)
        if repeat is not None and not repeat.passed_on:
            shown = again_text(shown, settings.asked_again_message)
        stdout.write(shown + "\n")
        turn_id = None
        if database is not None:
            with database.session() as session:
                conversation = get_or_create_conversation(
                    session, conversation_id=conversation_id, channel="terminal"
                )
                conversation_id = conversation.id
                if declined:  # remembered on the turn that offered the choices, as on the web
                    record_declined(session, conversation_id=conversation.id)
                if complaint is not None and complaint[1] is not None:
                    record_feedback(session, turn_id=complaint[1], helpful=False, comment=text)
                turn = log_turn(
                    session,
                    conversation_id=conversation.id,
                    user_text=text,
                    status=status,
                    intent=prediction.intent,
                    answer=prediction.answer,
                    confidence=min(max(prediction.confidence, 0.0), 1.0),
                    candidates=[c.to_dict() for c in prediction.ranking],
                    member_scores=prediction.member_scores,
                    model_version=prediction.model_version,
                    latency_ms=prediction.latency_ms,
                    suggested=[c.intent for c in prediction.suggestions],
                    # the choices answer the rated answer's question (a number picked next counts in review)
                    rated_turn_id=complaint[1] if offering and complaint is not None else None,
                    context_text=context,
                    off_topic=status == OFF_TOPIC,
                    read_as=prediction.read_as,
                    vague=prediction.vague,
                    ruled_out=prediction.ruled_out,
                    language=language,
                    asked_again=repeat.times if repeat is not None else None,
                )
                turn_id = turn.id
        answered = (prediction, turn_id) if status == ANSWERED else None
        if status != SMALL_TALK:
            after = AFTER_ANSWER
        else:  # the bot asked "anything else?" (or said goodbye), or asked for a question
            after = AFTER_ANYTHING_ELSE if kind in (THANKS, ACKNOWLEDGEMENT, GOODBYE) else AFTER_NOTHING
        if status == ANSWERED and prediction.intent is not None:
            last = (prediction.intent, repeat.times if repeat is not None else 1)
        elif status != SMALL_TALK:
            last = None
