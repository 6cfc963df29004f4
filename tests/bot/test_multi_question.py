"""Two questions in one message (bot.multi_question): how a message is cut into parts, and the chips its
other questions get beside the answer, the answer itself unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine import ANSWERED, CLARIFY, MetadataFilter
from bot.multi_question import MAX_PARTS, other_questions, question_parts, with_other_questions


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "How do I change my address? Also, how do I change my PIN?",
            ["How do I change my address?", "Also, how do I change my PIN?"],
        ),
        (
            "My card is about to expire. How much does a new one cost, and how fast will I get it?",
            ["My card is about to expire.", "How much does a new one cost", "how fast will I get it?"],
        ),
        ("my card was declined and can I get a refund", ["my card was declined", "can I get a refund"]),
        # chained by a word, as customers type them
        (
            "how do I change my pin and also what's the fee for transfers?",
            ["how do I change my pin", "what's the fee for transfers?"],
        ),
        ("top up with apple pay and then how do I send it", ["top up with apple pay", "how do I send it"]),
        ("my card hasn't arrived, also can I get a refund", ["my card hasn't arrived", "can I get a refund"]),
        ("change my pin plus how long do transfers take", ["change my pin", "how long do transfers take"]),
        ("where is my card; when will it arrive", ["where is my card", "when will it arrive"]),
        ("my card is blocked, oh and why was I charged", ["my card is blocked", "why was I charged"]),
        ("I lost my card btw, can I freeze it", ["I lost my card", "can I freeze it"]),
        ("My card expired. By the way, is there a fee?", ["My card expired.", "By the way, is there a fee?"]),
    ],
)
def test_a_message_of_several_questions_is_cut_at_sentences_and_joined_questions(
    text: str, parts: list[str]
) -> None:
    assert question_parts(text) == parts


@pytest.mark.parametrize(
    "text",
    [
        "where is my card",
        "Thanks. Where is my card?",  # a part of fewer than three words is no question of its own
        "Hi! Where is my card?",
        "I paid 4.50 for it and the fee was 1.20",  # a decimal point ends no sentence
        "I lost my card and my phone",  # "and" joins no question here
        "I also have a question about my card",  # "also" joins no question unless after a comma or "and"
        "my card is broken, can I get a new one",  # a bare comma joins no second question
        "can I also pay in euros plus dollars",  # nor does "plus" before other words
    ],
)
def test_one_question_is_not_cut(text: str) -> None:
    assert question_parts(text) == []


def test_at_most_max_parts_are_read_again() -> None:
    text = " ".join(f"Question number {i} is here." for i in range(MAX_PARTS + 2))
    assert len(question_parts(text)) == MAX_PARTS


def test_the_other_question_is_offered_first_and_the_answer_is_unchanged(timing_engine: Any) -> None:
    message = "My card has not arrived and my card is still not delivered. How do I change my pin?"
    whole = timing_engine.predict(message)
    assert whole.status == ANSWERED and whole.intent == "card_arrival"
    assert timing_engine.predict("how do I change my pin").intent == "change_pin"
    assert other_questions(timing_engine, whole) == ["change_pin"]
    offered = with_other_questions(timing_engine, whole)
    assert (offered.status, offered.intent, offered.answer) == (whole.status, whole.intent, whole.answer)
    assert [c.intent for c in offered.suggestions][0] == "change_pin"
    # A metadata filter that lets only the answer's intent through offers nothing else.
    only = MetadataFilter.of([("intent", "none")])
    assert other_questions(timing_engine, whole, only=only) == []


def test_nothing_more_when_unanswered_one_question_or_the_same_intent(timing_engine: Any) -> None:
    single = timing_engine.predict("when will my card arrive")
    assert single.status == ANSWERED and with_other_questions(timing_engine, single) is single
    same = timing_engine.predict("Where is my card? It has not arrived yet")
    assert same.intent == "card_arrival" and other_questions(timing_engine, same) == []
    unsure = timing_engine.predict(
        "My card has not arrived and my card is still not delivered. How do I change my pin?"
    )
    unsure.status = CLARIFY  # the bot asked "did you mean": its choices stand as they are
    assert other_questions(timing_engine, unsure) == []
