"""Two questions in one message: "How do I change my address? Also, how do I change my PIN?"

The model reads a message whole and answers one intent; the other question of the message went unanswered.
When the message was answered, its sentences (and its clauses chained on by a word before a question word:
"…, and how …", "… and also what …", ``SPLIT``) of at least
``MIN_WORDS`` words are also read one by one, at most ``MAX_PARTS`` of them, in one batch. An intent a part
is answered with at the gate (so at the deployment's precision), other than the answer given, is offered as
a chip beside the answer, before the intent's own follow-ups: the customer's other question is one click
away. The answer itself is never changed, so the bot's accuracy on single questions is what it was; a
message of one sentence costs nothing more (nothing is read again).

Chosen on BANKING77 rows held out of train (``bench/multi_questions.py --validation``: two questions of
different intents joined, and the held-out questions alone): reading every part, rather than only the parts
that look like questions, reached both intents of twice as many pairs for more extra chips on single
questions of several sentences (where a second sentence is often a second question: "My card is about to
expire. How much does a new one cost and how fast will I get it?")."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.engine import ANSWERED, Candidate, MetadataFilter, Prediction

QUESTION_WORD = (
    r"(?:how|what|what's|where|when|why|who|which|can|could|do|does|did|is|are|was|will|would|should|am|"
    r"have|has)"
)
# After a sentence's end, or before a second question joined on: ", and how / can / is …", "and also
# what …", "and then can …", ", also how …", ", plus is …", " plus why …", "; where …", "(,) oh and …",
# "(,) btw …", "(,) by the way …". A connector before other words joins no question ("I also have…", "and
# my phone"), nor does a bare comma ("my card is broken, can I get a new one" is one question).
CONNECTOR = (
    r"(?:,?\s+and(?:\s+(?:also|then))?|,\s*(?:also|plus)|\s+plus|\s*;|,?\s+(?:oh\s+and|btw|by\s+the\s+way))"
)
SPLIT = re.compile(rf"(?<=[?.!])\s+|{CONNECTOR},?\s+(?={QUESTION_WORD}\b)", re.IGNORECASE)
MIN_WORDS = 3  # "Thanks.", "Hi there." and "Please help!" are no question of their own
MAX_PARTS = 3  # read at most this many parts again (the message is read whole as well)


class Reader(Protocol):
    @property
    def knowledge(self) -> Mapping[str, Any]: ...

    def predict_batch(
        self, texts: Sequence[str], *, only: MetadataFilter | None = None
    ) -> list[Prediction]: ...


def question_parts(text: str) -> list[str]:
    """The parts of ``text`` read on their own: none when it holds fewer than two of ``MIN_WORDS`` words."""
    parts = [part.strip(" ,;") for part in SPLIT.split(text)]
    parts = [part for part in parts if len(part.split()) >= MIN_WORDS]  # empty parts have no words
    return parts[:MAX_PARTS] if len(parts) >= 2 else []


def other_questions(
    engine: Reader, prediction: Prediction, *, only: MetadataFilter | None = None
) -> list[str]:
    """The intents the message's other questions are answered with (in the message's order), besides the
    answer ``prediction`` gave; none when it gave no answer or the message is one question."""
    if prediction.status != ANSWERED:
        return []
    parts = question_parts(prediction.text)
    if not parts:
        return []
    found: list[str] = []
    for part in engine.predict_batch(parts, only=only):
        intent = part.intent
        if part.status != ANSWERED or not intent or intent in found:
            continue
        # Not the answer again, nor what the customer said the message is not about (bot.negation: "I don't
        # want to close my account. I want to change my PIN." holds no question about closing it).
        if intent not in (prediction.intent, prediction.ruled_out):
            found.append(intent)
    return found


def with_other_questions(
    engine: Reader, prediction: Prediction, *, only: MetadataFilter | None = None
) -> Prediction:
    """``prediction`` with the other questions' intents as its first chips (``suggestions``)."""
    others = [name for name in other_questions(engine, prediction, only=only) if name in engine.knowledge]
    if not others:
        return prediction
    chips = [Candidate(name, 0.0, engine.knowledge[name].title) for name in others]
    rest = [chip for chip in prediction.suggestions if chip.intent not in others]
    return dataclasses.replace(prediction, suggestions=chips + rest)
