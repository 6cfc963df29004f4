"""Follow-up questions (bot.follow_up): which messages refer back, which reading wins, and the engine's
reading of a message with the question before it (AnsweringEngine.predict_follow_up)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pytest

from bot.engine import (
    ANSWERED,
    CLARIFY,
    HANDOFF,
    AnsweringEngine,
    MetadataFilter,
    Prediction,
)
from bot.follow_up import (
    FOLLOW_UP_WEIGHT,
    MAX_CONTEXT_WORDS,
    Earlier,
    read_follow_up,
    refers_back,
    trimmed_context,
)


@pytest.mark.parametrize(
    "text",
    [
        "how long does that take?",
        "is there a charge for it?",
        "and what's the fee?",
        "what about abroad?",
        "can I use my card there too?",
        "and the chip doesn't work either",
        "how long until the new one arrives?",
        "So what now?",
        "what should I do now?",  # no subject of its own
        "What can I do?",
        "ok what next",
        "now what?",
    ],
)
def test_short_messages_that_point_back_refer_back(text: str) -> None:
    assert refers_back(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I change my PIN?",
        "My card still hasn't arrived",
        "What is the exchange rate for euros?",
        "Android pay is not working",  # "and" inside a word is no opening
        "I want to close my account",
        "What should I do if my card is stolen?",  # a subject of its own
        "What can I do about a payment I don't recognise?",
        # long enough to carry its own subject, though it says "it"
        "I ordered a new card two weeks ago and it still has not arrived at my home address",
    ],
)
def test_questions_that_stand_alone_do_not(text: str) -> None:
    assert not refers_back(text)


def test_the_context_kept_is_bounded() -> None:
    chain = " ".join(f"w{i}" for i in range(100))
    kept = trimmed_context(chain)
    assert kept.split() == [f"w{i}" for i in range(100 - MAX_CONTEXT_WORDS, 100)]
    assert trimmed_context("  where is my card ") == "where is my card"


def prediction(text: str, confidence: float, intent: str = "card_arrival") -> Prediction:
    from bot.engine import Candidate

    return Prediction(
        text=text,
        status=ANSWERED if confidence >= 0.9 else CLARIFY,
        intent=intent if confidence >= 0.9 else None,
        answer="",
        confidence=confidence,
        margin=0.5,
        ranking=[Candidate(intent, confidence, intent)],
        member_scores={},
        suggestions=[],
        model_version="v",
    )


class Scripted:
    """A predictor with fixed confidences for the reading alone and in context (and which of them is below
    the familiarity floor); records its calls."""

    def __init__(
        self, alone: float, in_context: float, unfamiliar: tuple[bool, bool] = (False, False)
    ) -> None:
        self.alone, self.in_context, self.unfamiliar = alone, in_context, unfamiliar
        self.calls: list[tuple[Any, ...]] = []

    def predict(
        self, text: str, *, only: MetadataFilter | None = None, exclude: Collection[str] = ()
    ) -> Prediction:
        self.calls.append(("predict", text, only, tuple(exclude)))
        return prediction(text, self.alone, "alone_intent")

    def predict_follow_up(
        self,
        text: str,
        earlier: str,
        *,
        weight: float,
        only: MetadataFilter | None = None,
        exclude: Collection[str] = (),
    ) -> tuple[Prediction, Prediction]:
        self.calls.append(("follow_up", text, earlier, weight, only, tuple(exclude)))
        alone = prediction(text, self.alone, "alone_intent")
        read = prediction(text, self.in_context, "context_intent")
        alone.unfamiliar, read.unfamiliar = self.unfamiliar
        self.adjust(alone, read, exclude)
        return alone, read

    def adjust(self, alone: Prediction, read: Prediction, exclude: Collection[str]) -> None:
        """What a scripted engine of another kind changes in the two readings (nothing here)."""


def test_the_more_confident_reading_wins_and_the_earlier_answer_is_left_out() -> None:
    engine = Scripted(alone=0.4, in_context=0.95)
    only = MetadataFilter.of([("product", "cards")])
    reading = read_follow_up(
        engine, "is there a charge for that?", earlier=Earlier("Can I top up by card?", "top_up"), only=only
    )
    assert reading.context == "Can I top up by card?"
    assert (
        reading.prediction.intent == "context_intent"
        and reading.prediction.text == "is there a charge for that?"
    )
    assert reading.read_text == "Can I top up by card? is there a charge for that?"
    assert engine.calls == [
        (
            "follow_up",
            "is there a charge for that?",
            "Can I top up by card?",
            FOLLOW_UP_WEIGHT,
            only,
            ("top_up",),
        )
    ]
    # alone more confident (or as confident): the reading alone, and no context
    for alone in (0.97, 0.95):
        kept = read_follow_up(Scripted(alone, 0.95), "is there a charge for that?", earlier=Earlier("x", "y"))
        assert kept.context is None and kept.prediction.intent == "alone_intent"
        assert kept.read_text == "is there a charge for that?"


def test_a_reading_too_unfamiliar_to_answer_loses_to_one_that_is_not() -> None:
    """Below the familiarity floor a reading is handed over whatever its confidence: a short "is it free?"
    alone is like no example; read after its question it is, and that reading is the reply."""
    earlier = Earlier("Can I top up by card?", "top_up")
    rescued = read_follow_up(Scripted(0.97, 0.5, (True, False)), "is it free?", earlier=earlier)
    assert rescued.context == "Can I top up by card?" and rescued.prediction.intent is None  # "did you mean"
    kept = read_follow_up(Scripted(0.5, 0.97, (False, True)), "is it free?", earlier=earlier)
    assert kept.context is None and kept.prediction.text == "is it free?"
    # Both below it (or both above): the more confident reading, as ever.
    both = read_follow_up(Scripted(0.5, 0.97, (True, True)), "is it free?", earlier=earlier)
    assert both.context == "Can I top up by card?"
    assert read_follow_up(Scripted(0.97, 0.5, (True, True)), "is it free?", earlier=earlier).context is None


def test_an_unanswered_earlier_question_leaves_nothing_out() -> None:
    engine = Scripted(alone=0.2, in_context=0.5)
    read_follow_up(engine, "what about that one?", earlier=Earlier("card pin", None))
    assert engine.calls[0][-1] == ()


@pytest.mark.parametrize(
    ("text", "earlier"),
    [
        ("how long does that take?", None),  # the conversation's first question
        ("how long does that take?", Earlier("   ", "x")),
        ("How do I change my PIN?", Earlier("where is my card", "card_arrival")),  # stands alone
    ],
)
def test_read_alone_without_an_earlier_question_or_a_reference(text: str, earlier: Earlier | None) -> None:
    engine = Scripted(alone=0.3, in_context=0.99)
    reading = read_follow_up(engine, text, earlier=earlier)
    assert reading.context is None and reading.prediction.intent is None
    assert engine.calls == [("predict", text, None, ())]  # read once: no second reading paid for


class Unsure(Scripted):
    """Both readings hand over; read with the question before it and nothing left out, the message's top
    intent is ``again``."""

    def __init__(self, again: str, unfamiliar: tuple[bool, bool] = (True, False)) -> None:
        super().__init__(0.1, 0.1, unfamiliar)
        self.again = again

    def adjust(self, alone: Prediction, read: Prediction, exclude: Collection[str]) -> None:
        from bot.engine import Candidate

        alone.status = read.status = HANDOFF
        if not exclude:
            read.ranking = [Candidate(self.again, 0.9, self.again)] + [
                Candidate(f"other_{i}", 0.02, f"other_{i}") for i in range(4)
            ]


def test_a_follow_up_about_the_same_thing_offers_the_earlier_answer_again() -> None:
    """ "It's been three weeks" after "my card still hasn't arrived": neither reading answers (the earlier
    answer is left out of the one in context); read with the question before it and nothing left out it is
    about the card again, so the customer is asked "did you mean" with that reading's top intents, the
    earlier answer first, instead of being handed over (or declined as off topic)."""
    engine = Unsure(again="card_arrival")
    earlier = Earlier("My card still hasn't arrived", "card_arrival")
    reading = read_follow_up(engine, "it's been three weeks", earlier=earlier)
    asked = reading.prediction
    assert (asked.status, asked.intent, asked.unfamiliar) == (CLARIFY, None, False)
    assert [c.intent for c in asked.suggestions] == ["card_arrival", "other_0", "other_1"]
    assert reading.context == "My card still hasn't arrived" and asked.text == "it's been three weeks"
    assert [call[-1] for call in engine.calls] == [("card_arrival",), ()]  # left out, then not
    # About something else read that way: handed over as before.
    other = read_follow_up(Unsure(again="exchange_rate"), "it's been three weeks", earlier=earlier)
    assert other.prediction.status == HANDOFF
    # No answer before it to return to: one reading, handed over.
    nothing = Unsure(again="card_arrival")
    assert (
        read_follow_up(nothing, "it's been weeks", earlier=Earlier("card", None)).prediction.status == HANDOFF
    )
    assert len(nothing.calls) == 1


def test_a_chain_of_follow_ups_reads_a_bounded_context() -> None:
    engine = Scripted(alone=0.3, in_context=0.99)
    long_earlier = " ".join(["word"] * 90)
    reading = read_follow_up(engine, "and that?", earlier=Earlier(long_earlier, None))
    assert reading.context is not None and len(reading.context.split()) == MAX_CONTEXT_WORDS
    assert len(engine.calls[0][2].split()) == MAX_CONTEXT_WORDS


def test_the_engine_reads_a_follow_up_with_the_question_before_it(timing_engine: AnsweringEngine) -> None:
    """ "How long does that take?" alone falls between card delivery and transfer times; after "where is my
    card" it is card delivery. Not the earlier question's answer again: that intent is left out."""
    alone = timing_engine.predict("how long does that take?")
    assert alone.status != ANSWERED
    first = timing_engine.predict("where is my card")
    assert first.status == ANSWERED and first.intent == "card_arrival"
    reading = read_follow_up(
        timing_engine, "how long does that take?", earlier=Earlier("where is my card", first.intent)
    )
    assert reading.context == "where is my card"
    assert reading.prediction.status == ANSWERED and reading.prediction.intent == "card_delivery_estimate"
    assert reading.prediction.confidence > alone.confidence
    assert reading.prediction.text == "how long does that take?"
    # after a question the follow-up does not fit, it keeps its own reading
    rate = timing_engine.predict("what exchange rate do you use")
    other = read_follow_up(
        timing_engine,
        "how long does that take?",
        earlier=Earlier("what exchange rate do you use", rate.intent),
    )
    assert other.context is None and other.prediction.status == alone.status


def test_predict_follow_up_reads_alone_as_predict_does(timing_engine: AnsweringEngine) -> None:
    alone, in_context = timing_engine.predict_follow_up(
        "how long does that take?", "where is my card", weight=FOLLOW_UP_WEIGHT, exclude=["card_arrival"]
    )
    plain = timing_engine.predict("how long does that take?")
    assert alone.status == plain.status and alone.confidence == pytest.approx(plain.confidence)
    assert [c.intent for c in alone.ranking] == [c.intent for c in plain.ranking]
    assert "card_arrival" not in [c.intent for c in in_context.ranking]
    # the exclusion is the context reading's only
    left_out, _ = timing_engine.predict_follow_up(
        "how long does that take?",
        "where is my card",
        weight=FOLLOW_UP_WEIGHT,
        exclude=["card_delivery_estimate"],
    )
    assert left_out.ranking[0].intent == plain.ranking[0].intent == "card_delivery_estimate"
    # the weight moves the reading between the two messages: all on the earlier one, it reads as that
    _, earlier_only = timing_engine.predict_follow_up(
        "how long does that take?", "where is my card", weight=0.0
    )
    assert earlier_only.ranking[0].intent == "card_arrival"


def test_exclude_leaves_intents_out_without_renormalising(timing_engine: AnsweringEngine) -> None:
    full = timing_engine.predict("where is my card")
    without = timing_engine.predict("where is my card", exclude=["card_arrival"])
    assert full.intent == "card_arrival"
    assert "card_arrival" not in [c.intent for c in without.ranking]
    assert without.confidence < full.confidence  # the left-out share stays "not here"
    assert without.status != ANSWERED
    probabilities = {c.intent: c.probability for c in full.ranking}
    for candidate in without.ranking:  # the others keep their probabilities
        if candidate.intent in probabilities:
            assert candidate.probability == pytest.approx(probabilities[candidate.intent])
    # under a metadata filter too (the view without the filter leaves them out as well)
    only = MetadataFilter.of([("product", "none")])
    filtered = timing_engine.predict("where is my card", only=only, exclude=["card_arrival"])
    assert "card_arrival" not in [c.intent for c in filtered.unfiltered]
    assert np.isfinite(filtered.confidence)
