"""What the chat does with a message before the model reads it: a typed request for a person
(``bot.handoff``), then small talk (``bot.small_talk``); what is left is the question the model reads.

One function, so that the web chat, the terminal chat and the operators' *Try* page read a message the same
way. The settings come in as arguments: ``bot`` knows no settings module."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.engine import MAX_CLARIFY_CHOICES
from bot.handoff import asks_for_person, escalation
from bot.small_talk import HELP, NOT_HELPFUL, read_small_talk


@dataclass(frozen=True)
class MessageReading:
    question: str  # what the model reads: the message without greetings or thanks around the question
    asks_for_person: bool = False  # "can I talk to a human?": the handoff button, typed
    small_talk: str | None = None  # the kind, when the whole message is small talk ("hi", "thanks")
    # "That's wrong", alone or around a new question ("No, that's not what I asked. Where is my card?"): the
    # customer says the last answer was wrong.
    complaint: bool = False
    # A complaint ("I want to make a complaint") or exasperation ("this is ridiculous"), from
    # bot.handoff.escalation: with the model's reply, it decides whether a person takes the message
    # (bot.handoff.escalates).
    escalation: str | None = None

    def small_talk_reply(self, *, answer_to_rate: bool) -> str | None:
        """The kind of small-talk reply: "that's wrong" with no answer before it to be wrong (none yet, or
        already rated) gets the help reply, which says how to ask."""
        if self.small_talk == NOT_HELPFUL and not answer_to_rate:
            return HELP
        return self.small_talk

    @property
    def for_the_model(self) -> bool:
        """Whether the reply is the model's (no rule answered the message)."""
        return not self.asks_for_person and self.small_talk is None


def read_message(
    text: str,
    *,
    small_talk: bool = True,
    handoff_requests: bool = True,
    handoff_pattern: re.Pattern[str] | None = None,
) -> MessageReading:
    """How the chat reads ``text``; ``small_talk`` / ``handoff_requests`` False turn a rule off (the message
    then goes to the model as typed), ``handoff_pattern`` adds a deployment's own phrasing of a request."""
    talk = read_small_talk(text) if small_talk else None
    question = talk.question if talk is not None else text
    if handoff_requests and asks_for_person(text, handoff_pattern):
        return MessageReading(question, asks_for_person=True)
    kind = escalation(text) if handoff_requests else None
    if talk is None:
        return MessageReading(question, escalation=kind)
    complaint = talk.kind == NOT_HELPFUL or NOT_HELPFUL in talk.left_out
    return MessageReading(question, small_talk=talk.kind, complaint=complaint, escalation=kind)


def choices_after_wrong(ranked: Sequence[str], wrong: str | None) -> list[str]:
    """After "that's wrong": the intents the model ranked next for that question (the wrong answer left out),
    best first, as many as a "did you mean" offers."""
    return [name for name in ranked if name != wrong][:MAX_CLARIFY_CHOICES]
