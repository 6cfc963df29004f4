"""bot.handoff.asks_for_person: a typed request for a person, and the look-alikes that must stay questions."""

from __future__ import annotations

import re

import pytest

from bot.engine import ANSWERED, CLARIFY, HANDOFF, Prediction
from bot.handoff import COMPLAINT, FRUSTRATION, asks_for_person, escalates, escalation
from tests.conftest import banking77_questions

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


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("I want to make a complaint", COMPLAINT),
        ("how do I complain", COMPLAINT),
        ("I'd like to file a formal complaint about the exchange rate", COMPLAINT),
        ("I'm going to the ombudsman", COMPLAINT),
        ("Complaints", COMPLAINT),
        ("This is ridiculous, 3rd time asking", FRUSTRATION),
        ("third time I asked today", FRUSTRATION),
        ("this bank is useless", FRUSTRATION),
        ("I'm fed up", FRUSTRATION),
        ("what a waste of my time", FRUSTRATION),
        ("terrible service", FRUSTRATION),
        ("where is my card", None),
        ("I have a question", None),
        ("my card is complete rubbish", FRUSTRATION),
        ("can I compare rates", None),
    ],
)
def test_complaints_and_exasperation(text: str, kind: str | None) -> None:
    assert escalation(text) == kind
    assert not asks_for_person(text)  # neither is a request for a person by itself


@pytest.mark.parametrize("full", [False, True], ids=["fixture", "full BANKING77"])
def test_no_banking77_question_complains(full: bool) -> None:
    """The committed fixture and BANKING77's 13,083 questions: none uses a complaint's words; 11 of the full
    set use words of exasperation around a real question, which the model answers or asks about as any (only
    a message the bot would decline as off topic goes to a person for them)."""
    kinds = [escalation(text) for text in banking77_questions(full)]
    assert COMPLAINT not in kinds
    assert kinds.count(FRUSTRATION) == (11 if full else 0)


def _prediction(status: str, *, unfamiliar: bool = False) -> Prediction:
    return Prediction(
        text="x", status=status, intent="card_arrival" if status == ANSWERED else None, answer="",
        confidence=0.5, margin=0.1, ranking=[], member_scores={}, suggestions=[], model_version="v",
        unfamiliar=unfamiliar,
    )  # fmt: skip


def test_a_complaint_the_bot_cannot_answer_and_exasperation_it_would_decline_go_to_a_person() -> None:
    answered, asked, handed = _prediction(ANSWERED), _prediction(CLARIFY), _prediction(HANDOFF)
    declined = _prediction(HANDOFF, unfamiliar=True)
    assert declined.off_topic
    assert [escalates(COMPLAINT, p) for p in (answered, asked, handed, declined)] == [False, True, True, True]
    assert [escalates(FRUSTRATION, p) for p in (answered, asked, handed, declined)] == [
        False,
        False,
        False,
        True,
    ]
    assert not escalates(None, declined)
