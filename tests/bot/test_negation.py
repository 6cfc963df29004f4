"""What the customer says the question is not (bot.negation): the negated clause is found, its intent ruled
out of the answer when the rest of the message reads as another, and ruling out alone never makes an answer
while two or more intents are left."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine import ANSWERED, CLARIFY, RULED_OUT_CHOICE
from bot.multi_question import other_questions
from bot.negation import MIN_REST_WORDS, Contrast, contrast_of
from tests.conftest import banking77_questions


@pytest.mark.parametrize(
    ("text", "negated", "rest"),
    [
        (
            "I don't want to close my account, I just want to freeze my card",
            "close my account",
            "I just want to freeze my card",
        ),
        (
            "I'm not trying to cancel the transfer, I want to know when it arrives",
            "cancel the transfer",
            "I want to know when it arrives",
        ),
        ("I don't want to change my PIN, my PIN is blocked", "change my PIN", "my PIN is blocked"),
        (
            "I don't need help with contactless, the whole card isn't working",
            "contactless",
            "the whole card isn't working",
        ),
        ("not asking about fees - how long does a transfer take", "fees", "how long does a transfer take"),
        (
            "I didn't mean the exchange rate, I meant which currencies I can hold",
            "the exchange rate",
            "I meant which currencies I can hold",
        ),
        (
            "Hi. I dont want to close the account but I do want to change my details",
            "close the account",
            "I do want to change my details",
        ),
        ("it's not about my card. My transfer hasn't arrived", "my card", "My transfer hasn't arrived"),
        ("I'm not looking for a refund; why was I charged twice?", "a refund", "why was I charged twice?"),
    ],
)
def test_a_negated_clause_with_more_after_it_is_a_contrast(text: str, negated: str, rest: str) -> None:
    assert contrast_of(text) == Contrast(negated, rest)


@pytest.mark.parametrize(
    "text",
    [
        "I don't want this account anymore",  # nothing after it: it asks to close the account
        "I don't want to close my account",
        "I don't want to close my account, thanks",  # fewer than MIN_REST_WORDS words after it
        "I didn't mean to do the transfer, is there any way to cancel it?",  # an accident, not a contrast
        "I didn't want to buy this, can I get a refund?",  # the past tense: what happened, not what is asked
        "I don't want that, I want something else",  # an object of pronouns names nothing
        "my card doesn't work, I need a new one",  # no negated wish
        "Where is my card? I don't want to wait any longer",  # the negated clause is the last
        "I want to get cash from the ATM but I dont want to be charged",  # nothing after the negated clause
        "",
    ],
)
def test_no_contrast(text: str) -> None:
    assert contrast_of(text) is None
    assert MIN_REST_WORDS == 3


@pytest.mark.parametrize("full", [False, True], ids=["fixture", "full BANKING77"])
def test_few_banking77_questions_hold_a_contrast(full: bool) -> None:
    """The committed fixture holds none; BANKING77's 13,083 questions hold six (bench/negation.py reads them
    with the fitted model: none of their answers changes)."""
    found = [q for q in banking77_questions(full) if contrast_of(q) is not None]
    assert len(found) == (6 if full else 0), found


def _read(engine: Any, text: str, *, negation: bool) -> Any:
    engine.negation = negation
    try:
        return engine.predict(text)
    finally:
        engine.negation = True


def test_the_intent_the_customer_rules_out_is_not_the_answer(small_engine: Any) -> None:
    text = "I don't want to change my PIN, my PIN is blocked"
    whole = _read(small_engine, text, negation=False)
    assert (whole.status, whole.intent, whole.ruled_out) == (ANSWERED, "change_pin", None)  # the words win
    ruled = small_engine.predict(text)
    # Only pin_blocked is left with any weight once change_pin is ruled out: it is answered.
    assert (ruled.status, ruled.intent, ruled.ruled_out) == (ANSWERED, "pin_blocked", "change_pin")
    assert "change_pin" not in {c.intent for c in ruled.suggestions}  # nor offered as a follow-up
    assert ruled.to_dict()["ruled_out"] == "change_pin" and "ruled_out" not in whole.to_dict()
    assert (
        ruled.ranking[0].intent == "pin_blocked"
        and ruled.ranking[0].probability > whole.ranking[1].probability
    )


def test_ruling_out_alone_offers_choices_rather_than_an_answer(small_engine: Any) -> None:
    """With the ruled-out intent's share given to the rest, lost_or_stolen_card would clear the gate; but
    the model did not answer it on the message's own reading, and other intents are left: the customer
    picks."""
    text = "I don't want to close my account, I just want to freeze my lost card"
    whole = _read(small_engine, text, negation=False)
    assert (whole.status, whole.intent) == (ANSWERED, "terminate_account")
    ruled = small_engine.predict(text)
    assert ruled.status == CLARIFY and ruled.intent is None and ruled.ruled_out == "terminate_account"
    choices = [c.intent for c in ruled.suggestions]
    assert choices[0] == "lost_or_stolen_card" and "terminate_account" not in choices and len(choices) >= 2
    assert ruled.confidence >= small_engine.gate.threshold  # sure enough on the renormalised reading alone
    assert all(c.probability >= RULED_OUT_CHOICE for c in ruled.suggestions)


def test_an_answer_the_message_gives_anyway_stands(small_engine: Any) -> None:
    text = "I don't want to close my account, I just want to change my PIN"
    ruled = small_engine.predict(text)
    assert (ruled.status, ruled.intent, ruled.ruled_out) == (ANSWERED, "change_pin", "terminate_account")
    assert ruled.confidence >= _read(small_engine, text, negation=False).confidence
    # Both clauses about the same intent: the negated words name the topic, nothing is ruled out.
    same = small_engine.predict("I don't want to change my pin, how do I change my pin")
    assert (same.status, same.intent, same.ruled_out) == (ANSWERED, "change_pin", None)


def test_a_batch_reads_each_message_as_alone(small_engine: Any) -> None:
    texts = [
        "where is my card",
        "I don't want to change my PIN, my PIN is blocked",
        "I don't want to close my account, I just want to freeze my lost card",
        "what is the exchange rate",
    ]
    batch = small_engine.predict_batch(texts)
    alone = [small_engine.predict(t) for t in texts]
    assert [(p.status, p.intent, p.ruled_out) for p in batch] == [
        (p.status, p.intent, p.ruled_out) for p in alone
    ]
    assert [p.ruled_out for p in batch] == [None, "change_pin", "terminate_account", None]


def test_a_follow_up_reading_rules_out_the_same(small_engine: Any) -> None:
    alone, in_turn = small_engine.predict_follow_up(
        "I don't want to change my PIN, my PIN is blocked", "where is my card", weight=0.6
    )
    assert alone.ruled_out == in_turn.ruled_out == "change_pin"
    assert "change_pin" not in {alone.intent, in_turn.intent}


def test_another_question_is_never_the_ruled_out_one(small_engine: Any) -> None:
    """Read sentence by sentence, "I don't want to close my account." is about closing it; the customer said
    the message is not, so it is no chip beside the answer."""
    text = "I don't want to close my account. I just want to change my PIN please."
    answered = small_engine.predict(text)
    assert (answered.status, answered.intent, answered.ruled_out) == (
        ANSWERED,
        "change_pin",
        "terminate_account",
    )
    assert small_engine.predict("I don't want to close my account").intent == "terminate_account"
    assert other_questions(small_engine, answered) == []
