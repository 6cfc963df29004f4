"""bot.handoff.asks_for_person: a typed request for a person, and the look-alikes that must stay questions."""

from __future__ import annotations

import re

import pytest

from bot.handoff import asks_for_person

REQUESTS = [
    "I want to speak to a human",
    "can I talk to a real person please?",
    "Let me speak with an agent",
    "connect me to customer service",
    "put me through to someone",
    "transfer me to a representative",
    "I need to chat with your support team",
    "how do I contact customer support",
    "get me a manager",
    "human",
    "Agent please!",
    "a real person",
    "I want a human",
    "my card hasn't arrived, let me talk to someone",
    "TALK TO A PERSON",
    "can someone call me",  # a call back
    "please call me back",
    "I would like a callback",
    "can you call me about my refund",  # the customer is the one called: no payment reading
    "can I get a phone call?",
]
QUESTIONS = [
    "I want to transfer money to another person",
    "someone else used my card",
    "how do I send money to someone abroad",
    "can I top up for another person?",
    "I paid someone by mistake, can I get a refund?",
    "Do I need to speak to a representative to change my pin?",
    "do i have to talk to someone to close an account or can i in the app",
    "should i contact customer support if i can't edit details",
    "who is the person I sent money to",
    "is my card contactless",
    "what's the exchange rate",
    "my personal details are wrong",
    "he will call me back after he pays",
    "will the courier call me before delivery",
    "my friend called me about a payment",
    "can I call you",
]


@pytest.mark.parametrize("text", REQUESTS)
def test_requests_for_a_person(text: str) -> None:
    assert asks_for_person(text)


@pytest.mark.parametrize("text", QUESTIONS)
def test_questions_that_mention_people_stay_questions(text: str) -> None:
    assert not asks_for_person(text)


def test_a_deployments_own_pattern_adds_its_language() -> None:
    german = re.compile(r"\bmit\s+(?:einem|einer)\s+(?:Menschen|Mitarbeiter(?:in)?)\b", re.IGNORECASE)
    assert not asks_for_person("Ich möchte mit einem Menschen sprechen")
    assert asks_for_person("Ich möchte mit einem Menschen sprechen", german)
    assert asks_for_person("human", german)  # English still works
