"""Follow-up questions: "and is there a charge for that?" right after "can I top up with my card?".

Read alone, a follow-up has no intent (or a wrong one: "is there a charge for that?" alone reads as the fee
for topping up by bank transfer). A message that refers back to something ("it", "that", "there", "too",
"either", "and …", "what about …") and is short is read a second time together with the question before it
in the same conversation (``AnsweringEngine.predict_follow_up``: the message's sentence embedding weighs
``FOLLOW_UP_WEIGHT`` against the earlier question's), with the answer that question got left out (a follow-up
asks something new: "and how long does that take?" after "my card hasn't arrived" is about delivery times,
not the missing card again). The more confident of the two readings is the reply; the gate then decides as
for any message. A question that stands on its own keeps its own reading, since the earlier question only
blurs it. A follow-up about the same thing ("it's been three weeks" after "my card still hasn't arrived")
that neither reading answers is asked about with the earlier answer as the first choice (``same_topic``).

Chosen on ``bench/data/follow_ups.csv`` (36 follow-ups, 15 changes of topic, 10 messages that are no
question, all written for it), then measured on ``bench/data/follow_ups_holdout.csv``, written before the
rule was coded, and on BANKING77 test questions preceded by a question of another intent (``bench/
follow_ups.py``). The chat keeps the earlier question on the turn (``context_text``) so that the log shows
what the model read."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Protocol

from bot.engine import (
    CLARIFY,
    HANDOFF,
    MAX_CLARIFY_CHOICES,
    OUT_OF_SCOPE,
    MetadataFilter,
    Prediction,
    in_context,
)

# A question with no subject of its own: "what should I do now?", "what now?", "now what?". After a question
# it is about that question; with none before it, it asks what the bot can do (the help reply).
_WHAT_NEXT = (
    r"^\s*(?:ok(?:ay)?\s+)?(?:what\s+(?:should|do|can|shall|must)\s+i\s+do(?:\s+(?:now|next))?|what\s+now|"
    r"what\s+next|now\s+what)\s*[?.!]*\s*$"
)
WHAT_NEXT = re.compile(_WHAT_NEXT, re.IGNORECASE)
# Words that point back to something said before, or openings that continue it ("one" as in "the new one";
# "then" as in "then what?"), or a question with no subject of its own.
REFERS_BACK = re.compile(
    r"\b(it|its|it's|that|that's|this|these|those|them|they|there|one|ones|same|too|either|also|then)\b"
    rf"|^\s*(and|but|so|or|what about|how about)\b|{_WHAT_NEXT}",
    re.IGNORECASE,
)
MAX_FOLLOW_UP_WORDS = 12  # longer messages carry their own subject
MAX_CONTEXT_WORDS = 40  # the earlier text kept: the question before, or that question with its own context


# How much the message weighs against the question before it when read together (chosen on the first set,
# 0.5 to 0.8, and the reading as one text: bench/follow_ups.py).
FOLLOW_UP_WEIGHT = 0.6


class Predictor(Protocol):
    def predict(
        self, text: str, *, only: MetadataFilter | None = None, exclude: Collection[str] = ()
    ) -> Prediction: ...

    def predict_follow_up(
        self,
        text: str,
        earlier: str,
        *,
        weight: float,
        only: MetadataFilter | None = None,
        exclude: Collection[str] = (),
    ) -> tuple[Prediction, Prediction]: ...


@dataclass(frozen=True)
class Earlier:
    """The question before, as the model read it (its own earlier context included), and the intent it was
    answered with (None when it was not answered: a "did you mean" or a handoff)."""

    text: str
    intent: str | None = None


@dataclass(frozen=True)
class FollowUpReading:
    prediction: Prediction
    context: str | None = None  # the earlier text the reply was read with; None: read alone

    @property
    def read_text(self) -> str:
        """What the model read for the reply."""
        return in_context(self.context, self.prediction.text) if self.context else self.prediction.text


def refers_back(text: str) -> bool:
    """Whether ``text`` may be a follow-up: short, with a word that points back."""
    return len(text.split()) <= MAX_FOLLOW_UP_WORDS and REFERS_BACK.search(text) is not None


def trimmed_context(text: str) -> str:
    """At most the last ``MAX_CONTEXT_WORDS`` words: a chain of follow-ups does not grow without end."""
    words = text.split()
    return " ".join(words[-MAX_CONTEXT_WORDS:])


def read_follow_up(
    engine: Predictor,
    text: str,
    *,
    earlier: Earlier | None,
    only: MetadataFilter | None = None,
    weight: float = FOLLOW_UP_WEIGHT,
) -> FollowUpReading:
    """The reply to ``text``: read alone, and when it refers back also with ``earlier`` (the earlier answer's
    intent left out); the more confident reading wins, unless only one of them is familiar enough to the
    knowledge base to be answered at all (``Prediction.unfamiliar``: a short "how much is it?" alone is
    like no example, read after its question it is). The prediction keeps ``text`` as its text either
    way."""
    if earlier is None or not earlier.text.strip() or not refers_back(text):
        return FollowUpReading(engine.predict(text, only=only))
    context = trimmed_context(earlier.text)
    exclude = (earlier.intent,) if earlier.intent else ()
    alone, read = engine.predict_follow_up(text, context, weight=weight, only=only, exclude=exclude)
    if alone.unfamiliar != read.unfamiliar:
        reading = FollowUpReading(read, context) if alone.unfamiliar else FollowUpReading(alone)
    elif read.confidence <= alone.confidence:
        reading = FollowUpReading(alone)
    else:
        reading = FollowUpReading(read, context)
    if reading.prediction.status != HANDOFF or not earlier.intent:
        return reading
    return same_topic(engine, text, context, earlier.intent, weight=weight, only=only) or reading


def same_topic(
    engine: Predictor,
    text: str,
    context: str,
    intent: str,
    *,
    weight: float = FOLLOW_UP_WEIGHT,
    only: MetadataFilter | None = None,
) -> FollowUpReading | None:
    """A follow-up neither reading could answer, which read with the question before it (that question's
    answer ``intent`` not left out) is about the same thing: "it's been three weeks" after "my card still
    hasn't arrived", "and my name?" after "I need to change my address". The customer is asked "did you
    mean" with that reading's top intents, ``intent`` first, rather than handed over (or declined as off
    topic). Not answered outright: read that way, a follow-up that asks something new the model cannot read
    ("it came yesterday but it doesn't work" after "how do I activate my card?") or no question at all
    ("what time is it?" after "how do I change my PIN?") would be answered with the earlier answer again
    (bench/follow_ups.py, kind ``same_topic``). None when that reading is about something else."""
    _, again = engine.predict_follow_up(text, context, weight=weight, only=only)
    if again.top_intent != intent:
        return None
    choices = [c for c in again.ranking if c.intent != OUT_OF_SCOPE][:MAX_CLARIFY_CHOICES]
    asked = replace(again, status=CLARIFY, intent=None, answer="", suggestions=choices, unfamiliar=False)
    return FollowUpReading(asked, context)
