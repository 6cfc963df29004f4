"""Does the customer ask for a person? ("can I talk to a human", "agent please", "connect me to support".)

A customer who types that wants what the widget's "Talk to a person" button does, not "I'm not sure I
understood", and the message is not a question the knowledge base answers, so it is no review item either.
The rule is deliberately narrow: a verb of reaching someone followed closely by who ("speak to an advisor",
"contact customer service"), or a message that is only who ("human", "a real person please"). Questions
about paying or sending money to a person ("transfer money to another person", "someone else used my card")
do not match; `tests/bot/test_handoff.py` lists both kinds, and not one BANKING77 question (train or test)
matches (`tests/bot/test_message_rules.py`).
Deployments in other languages add their own phrasing with one more pattern
(``HELPLOOP_HANDOFF_REQUEST_PATTERN``)."""

from __future__ import annotations

import re

from bot.engine import ANSWERED, HANDOFF, Prediction

# The turn log's status for such a message: the customer's reply is a handoff like any other (the widget
# and the API say "handoff"), but the bot did not give up on a question, so the answer rates, the
# conversation list's "bot ×N" and the canary's outcomes leave it out.
ASKED_FOR_PERSON = "asked_for_person"
# The turn log's (and the API's) status for a message off the knowledge base's topic
# (``Prediction.off_topic``: "what's the weather in Paris?"). The engine would not answer it, but nobody is
# asked to take it over either: the bot declines it with the deployment's off-topic line, the conversation
# does not join the handoff inbox and the widget asks for no contact. The customer can still ask for a person.
OFF_TOPIC = "off_topic"


def logged_status(prediction: Prediction, *, asked_for_person: bool = False) -> str:
    """The turn log's status for a reply: the engine's, or one of the two above."""
    if asked_for_person:
        return ASKED_FOR_PERSON
    return OFF_TOPIC if prediction.off_topic else prediction.status


def reply_status(logged: str) -> str:
    """The status the customer's side sees for a logged turn's status."""
    return HANDOFF if logged == ASKED_FOR_PERSON else logged


WHO = (
    r"(?:(?:a|an|the|your|some|one of your)\s+)?(?:real\s+|live\s+|actual\s+|human\s+)?"
    r"(?:human(?:\s+being)?|person|people|agent|representative|rep|operator|someone|somebody|staff"
    r"(?:\s+member)?|employee|advis[eo]r|consultant|manager|supervisor|team|"
    r"customer\s+(?:service|support|care)(?:\s+(?:agent|team|representative|rep))?|support(?:\s+team)?)"
)
# "talk to", "speak with", "chat with", "get me", "transfer me to", "put me through to", "contact", "reach".
REACH = (
    r"(?:talk|speak|chat)(?:ing)?\s+(?:to|with)|(?:connect|transfer|put|pass|hand)\s+me\s+(?:through\s+)?"
    r"(?:to|with)|get\s+me|contact|reach|call"
)
REQUEST = re.compile(rf"\b(?:{REACH})\s+{WHO}\b", re.IGNORECASE)
# The whole message is who is wanted, with politeness around it: "human", "agent please", "a real person!".
ONLY_WHO = re.compile(
    rf"^\s*(?:i\s+(?:want|need|would\s+like)\s+)?{WHO}(?:\s+(?:please|pls|now|asap))?\s*[.!?]*\s*$",
    re.IGNORECASE,
)
# A call back asked for: "can someone call me", "please call me back", "I'd like a callback". The one called
# is the customer, so no payment reading applies ("can someone call me about my refund" is a request).
CALL_BACK = re.compile(
    rf"\b(?:{WHO}|you)\s+(?:to\s+)?(?:call|ring|phone)\s+me\b"
    r"|^\s*(?:please\s+)?(?:call|ring|phone)\s+me(?:\s+back)?(?:\s+please)?\s*[.!?]*\s*$"
    r"|\b(?:a|request(?:\s+a)?|get\s+a|want\s+a|like\s+a)\s+(?:call\s*back|phone\s+call)\b|^\s*call\s*back\b",
    re.IGNORECASE,
)
# Words that make it about money or someone else's card, or a question about whether one must reach the
# team ("do I have to talk to someone to close my account?": the knowledge base answers that).
NOT_A_REQUEST = re.compile(
    r"\b(?:send|sent|transfer(?!\s+me\b)|pay|paid|owe|refund|charged|top\s*up|account\s+of|card\s+of|someone\s+else)\b"
    r"|\b(?:(?:do|does|will|would)\s+(?:i|we|you)\s+(?:need|have)\s+to|should\s+i|must\s+i|have\s+to|"
    r"necessary\s+to|required\s+to)\s+(?:\w+\s+)?(?:talk|speak|chat|contact|call|reach)\b",
    re.IGNORECASE,
)


# A complaint: "I want to complain", "I'd like to make a complaint", "how do I file a complaint", "ombudsman".
# No BANKING77 question uses these words. A knowledge base with a complaints intent still answers it.
COMPLAINT_WORDS = re.compile(r"\b(?:complain(?:t|ts|s|ed|ing)?|ombudsman)\b", re.IGNORECASE)
# Exasperation: "this is ridiculous", "3rd time asking", "useless". BANKING77's customers use some of these
# words around real questions ("this is ridiculous, my card still hasn't come"), which the bot answers or
# asks about as any; they only decide what happens to a message the bot would decline as off its topic.
FRUSTRATION_WORDS = re.compile(
    r"\b(?:ridiculous|unacceptable|useless|pathetic|disgrace(?:ful)?|outrageous|appalling|rubbish|fed\s+up|"
    r"sick\s+(?:and\s+tired\s+)?of|waste\s+of\s+(?:my\s+)?time|(?:terrible|awful|horrible|worst|poor|bad)\s+service|"
    r"(?:second|2nd|third|3rd|fourth|4th|fifth|5th|how\s+many)\s+times?\s+(?:i\s+)?(?:ask|asked|asking|now|today)|"
    r"(?:keep|kept)\s+(?:on\s+)?asking|not\s+(?:good\s+enough|acceptable|helping|listening))\b",
    re.IGNORECASE,
)
COMPLAINT, FRUSTRATION = "complaint", "frustration"


def escalation(text: str) -> str | None:
    """``COMPLAINT`` when ``text`` complains ("I want to make a complaint"), ``FRUSTRATION`` when it says the
    customer is exasperated ("this is ridiculous, 3rd time asking"), else None. Neither is a request for a
    person by itself: what the chat does depends on whether the bot can answer (``escalates``)."""
    if COMPLAINT_WORDS.search(text):
        return COMPLAINT
    if FRUSTRATION_WORDS.search(text):
        return FRUSTRATION
    return None


def escalates(kind: str | None, prediction: Prediction) -> bool:
    """Whether a message of this escalation ``kind`` goes to a person rather than getting ``prediction``'s
    reply: a complaint the bot does not answer (a "did you mean" about "I want to complain about the
    exchange rate" or the off-topic line would turn a complaint away), or exasperation the bot would decline
    as off its topic ("Sorry, I don't have an answer to that" to "this is ridiculous")."""
    if kind == COMPLAINT:
        return prediction.status != ANSWERED
    return kind == FRUSTRATION and prediction.off_topic


def asks_for_person(text: str, extra: re.Pattern[str] | None = None) -> bool:
    """Whether ``text`` asks to be put through to a person (``extra``: a deployment's own pattern, searched
    as it is)."""
    if extra is not None and extra.search(text):
        return True
    if ONLY_WHO.match(text) or CALL_BACK.search(text):
        return True
    match = REQUEST.search(text)
    if match is None:
        return False
    # "call someone" or "contact the person I sent money to" are about a payment; look at the words around.
    return NOT_A_REQUEST.search(text) is None
