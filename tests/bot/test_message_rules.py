"""The rules read before the model (bot.handoff, bot.small_talk, bot.message_rules): real banking questions
pass through to the model, and the rules apply in one order."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from bot.handoff import asks_for_person
from bot.message_rules import MessageReading, choices_after_wrong, read_message
from bot.small_talk import small_talk_kind
from tests.conftest import banking77_questions


@pytest.mark.parametrize("rule", [asks_for_person, small_talk_kind], ids=["handoff request", "small talk"])
@pytest.mark.parametrize("full", [False, True], ids=["fixture", "full BANKING77"])
def test_no_banking77_question_is_caught(rule: Callable[[str], object], full: bool) -> None:
    """Real banking questions, several about people (payees, other cardholders) or opening with a greeting:
    neither rule may take a single one from the model."""
    texts = banking77_questions(full)
    assert len(texts) > (13_000 if full else 250)
    assert [t for t in texts if rule(t)] == []


def test_read_message_applies_the_request_rule_then_small_talk() -> None:
    """The order the chat, the terminal and the Try page share: a request for a person first (even wrapped in
    small talk), then small talk, and what is left is the question the model reads."""
    wrapped = read_message("Hi! Can I talk to a human? Thanks")
    assert wrapped == MessageReading("Can I talk to a human?", asks_for_person=True)
    assert not wrapped.for_the_model
    assert read_message("thanks, bye") == MessageReading("thanks, bye", small_talk="goodbye")
    question = read_message("Hello! My card hasn't arrived. Thanks!")
    assert question == MessageReading("My card hasn't arrived.") and question.for_the_model
    # "That's wrong", alone or around a new question, says the last answer was wrong.
    assert read_message("that's wrong") == MessageReading(
        "that's wrong", small_talk="not_helpful", complaint=True
    )
    meant = read_message("No, that's not what I asked. Where is my card?")
    assert meant == MessageReading("Where is my card?", complaint=True) and meant.for_the_model
    assert not read_message("the exchange rate was wrong").complaint
    # Each rule can be turned off, and a deployment adds its own phrasing of a request.
    assert read_message("agent please", handoff_requests=False) == MessageReading("agent please")
    assert read_message("Hi! My card hasn't arrived.", small_talk=False) == MessageReading(
        "Hi! My card hasn't arrived."
    )
    german = re.compile(r"\bmit einem menschen\b", re.IGNORECASE)
    assert read_message("Ich will mit einem Menschen sprechen", handoff_pattern=german).asks_for_person
    assert not read_message("Ich will mit einem Menschen sprechen").asks_for_person


def test_the_choices_after_that_is_wrong_are_the_next_ranked_intents() -> None:
    ranked = ["card_arrival", "change_pin", "top_up", "exchange_rate", "lost_card"]
    assert choices_after_wrong(ranked, "card_arrival") == ["change_pin", "top_up", "exchange_rate"]
    assert choices_after_wrong(ranked, "top_up") == ["card_arrival", "change_pin", "exchange_rate"]
    assert choices_after_wrong(["card_arrival"], "card_arrival") == []  # a clicked chip: nothing ranked next


def test_that_is_wrong_with_nothing_to_rate_gets_the_help_reply() -> None:
    wrong = read_message("that's wrong")
    assert wrong.small_talk_reply(answer_to_rate=True) == "not_helpful"
    assert wrong.small_talk_reply(answer_to_rate=False) == "help"
    thanks = read_message("thanks!")
    assert thanks.small_talk_reply(answer_to_rate=False) == thanks.small_talk == "thanks"
    assert read_message("where is my card").small_talk_reply(answer_to_rate=True) is None
