"""bot.small_talk: "hi", "thanks", "bye" are not questions; a question that starts with one still is."""

from __future__ import annotations

import pytest

from bot.engine import SMALL_TALK
from bot.small_talk import (
    ACKNOWLEDGEMENT,
    AFTER_ANSWER,
    AFTER_ANYTHING_ELSE,
    AFTER_NOTHING,
    GO_AHEAD,
    GOODBYE,
    acknowledgement_reply,
    read_small_talk,
    small_talk_kind,
    small_talk_prediction,
    without_small_talk,
)

KINDS = [
    ("hi", "greeting"),
    ("Hello there!", "greeting"),
    ("hey :)", "greeting"),
    ("Good morning", "greeting"),
    ("hi, how are you?", "greeting"),
    ("thanks", "thanks"),
    ("Thank you so much 🙏", "thanks"),
    ("thanks, that helped", "thanks"),
    # the problem solved is a thanks ("thank you so much that fixed it" after an answer read as a question)
    ("thank you so much that fixed it", "thanks"),
    ("that fixed it, thanks", "thanks"),
    ("ok that did the trick", "thanks"),
    ("all sorted now thanks", "thanks"),
    ("it works now!", "thanks"),
    ("that's exactly what I needed", "thanks"),
    ("found it, thank you", "thanks"),
    ("you've been really helpful", "thanks"),
    ("that was really helpful", "thanks"),
    ("that answered my question, bye", "goodbye"),
    # what the customer will do next ("great, I'll try that" after an answer was a "did you mean")
    ("great, I'll try that", "acknowledgement"),
    ("ok I'll wait then", "acknowledgement"),
    ("done", "acknowledgement"),
    ("let me check", "acknowledgement"),
    ("I'll give it a go and see", "acknowledgement"),
    ("oh ok, fair enough", "acknowledgement"),
    ("will do, thanks", "thanks"),
    ("I already tried that", "not_helpful"),  # the answer's advice, followed: a thumbs-down, typed
    ("i've tried that already!", "not_helpful"),
    # the answer (or the question) unclear: "what?" was declined as off topic
    ("I don't understand", "unclear"),
    ("what?", "unclear"),
    ("huh??", "unclear"),
    ("what do you mean?", "unclear"),
    ("can you explain that again", "unclear"),
    ("sorry, I'm confused", "unclear"),
    ("that's confusing", "unclear"),
    ("i dont get it", "unclear"),
    # introducing oneself (was declined as off topic)
    ("Hi, I'm John", "greeting"),
    ("hello, my name is sarah", "greeting"),
    ("can u help me", "help"),
    ("bye", "goodbye"),
    ("ok thanks bye", "goodbye"),  # the kind that ends the exchange answers
    ("no", "goodbye"),
    ("that's all, thanks", "goodbye"),
    ("ok", "acknowledgement"),
    ("great!", "acknowledgement"),
    ("👍", "acknowledgement"),
    ("👌🏽", "acknowledgement"),
    # what an emoji says ("😡" after an answer was read as a nod: "Is there anything else I can help with?")
    ("😡", "not_helpful"),
    ("👎", "not_helpful"),
    ("👎🏻👎🏻", "not_helpful"),  # skin tones and repeats
    ("☹️", "not_helpful"),
    ("ok 👎", "not_helpful"),  # the kind that ends the exchange most
    ("🤔", "unclear"),
    ("🤷‍♀️", "unclear"),
    ("?", "unclear"),  # "?" alone: the customer did not follow (was declined as off topic)
    ("???", "unclear"),
    ("🙏", "thanks"),
    ("❤️", "thanks"),
    ("thanks 😊", "thanks"),
    ("👋", "greeting"),
    # another question on its way (went to the model, which declined "one more thing" as off topic)
    ("one more thing", "go_ahead"),
    ("Yeah, one more thing", "go_ahead"),
    ("I have another question", "go_ahead"),
    ("thanks, one more question", "go_ahead"),
    ("no, one more thing", "go_ahead"),  # not a goodbye
    ("wait what?", "unclear"),
    ("actually yes, one more thing", "go_ahead"),
    ("not right now", "goodbye"),
    ("😂", "acknowledgement"),
    ("are you a bot?", "about_bot"),
    ("is this a real person?", "about_bot"),
    ("what can you do?", "help"),
    ("help", "help"),
    ("whats ur name?", "about_bot"),
    ("yes please", "acknowledgement"),
    ("never mind", "acknowledgement"),
    ("nvm", "acknowledgement"),
    ("no worries", "acknowledgement"),
    ("sorry", "acknowledgement"),
    ("help please", "help"),
    ("thanks but that didnt help", "not_helpful"),  # joined by a connector: the complaint answers
    ("this is useless, you stupid bot", "not_helpful"),
    ("ok and bye", "goodbye"),
    ("hi and thanks", "thanks"),
    # how people type them in a chat
    ("thankyou", "thanks"),
    ("thank u", "thanks"),
    ("thanx", "thanks"),
    ("thanks alot", "thanks"),
    ("cheers mate", "thanks"),
    ("helo", "greeting"),
    ("gud morning", "greeting"),
    ("byee", "goodbye"),
    ("okey", "acknowledgement"),
    ("okk", "acknowledgement"),
    # one typo in small talk's own longer words
    ("thnaks", "thanks"),
    ("goodbey", "goodbye"),
    ("perfetc", "acknowledgement"),
]
QUESTIONS = [
    "hi, my card hasn't arrived",
    "thanks but my card still hasn't arrived",
    "great, how do I order a new card?",
    "ok so how do I top up",
    "no money arrived in my account",
    "yes I want to cancel my transfer",
    "help me close my account",
    "is my card good for use abroad",
    "bye bye card? how do I cancel it",
    "...",
    "",
    "but",  # connectors alone are no small talk
    "please",
    "please where is my card",
    "and so",
    "oh no",  # dismay, not a goodbye
    "and how do I change my pin",
    "so my card is lost",
    "it works now but my top up is still pending",
    "the card works now?",  # "works" on its own subject is a question, not a thanks
    "found my card, can I unfreeze it",
    "I'll wait for my card",  # what it waits for is a question
    "let me check my balance",
    "done, now how do I activate it?",
    "I already tried topping up by card",
    # a problem reported after the answer: a follow-up question for the model, not a judgement of the answer
    "I've done that but it still doesn't work",
    "still not working",
    "it didn't work",
    "it's still broken",
    "what is the exchange rate",
    "I don't understand why my card was declined",
    "can you explain the fees",
    "what does pending mean",
    "I'm stuck",
    "i'm abroad",
    "this is ridiculous",
    "my name is wrong on my card",
    "that fixed my card but the app still crashes",
    "he thinks my card is lost",
    "cheese",
    "hell",
    "food",  # one key from "good", which is too short to be read back
]


@pytest.mark.parametrize(("text", "kind"), KINDS)
def test_small_talk_kinds(text: str, kind: str) -> None:
    assert small_talk_kind(text) == kind


@pytest.mark.parametrize("text", QUESTIONS)
def test_a_question_with_small_talk_in_it_is_a_question(text: str) -> None:
    assert small_talk_kind(text) is None


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("Hi! My card hasn't arrived. Thanks!", "My card hasn't arrived."),
        ("hi, when will my card arrive?", "when will my card arrive?"),
        ("Hello there, I lost my card, thanks", "I lost my card"),
        ("Good morning! Can I change my PIN? Thank you so much 🙏", "Can I change my PIN?"),
        # an emoji around a question says nothing of the last answer: left out, no complaint
        ("My card still hasn't come! 😡", "My card still hasn't come!"),
        ("Oh no!  I lost my card!  Help!", "Oh no!  I lost my card!"),
        ("my card is lost", "my card is lost"),  # nothing around it
        ("hi i lost my card", "hi i lost my card"),  # only whole parts go
        ("thanks", "thanks"),  # nothing would be left: small talk, answered as such
        ("Where is my card, please?", "Where is my card, please?"),
        ("sorry, where is my card?", "where is my card?"),
        ("Thnaks! my crad is lost", "my crad is lost"),  # the question as typed: the model reads it after
        ("Done. Now how do I activate it?", "Now how do I activate it?"),
        # Small talk only as a whole message: around a question these words are part of it (BANKING77's
        # questions read as before them: none is changed).
        ("I tried using my card, but it doesn't work.", "I tried using my card, but it doesn't work."),
        (
            "There is a pending payment, what does this mean?",
            "There is a pending payment, what does this mean?",
        ),
        ("What, if any, is the limit for auto top-up?", "What, if any, is the limit for auto top-up?"),
        ("I'm confused. Why is my transfer pending?", "I'm confused. Why is my transfer pending?"),
        ("I already tried that. My PIN is still blocked", "I already tried that. My PIN is still blocked"),
    ],
)
def test_the_model_reads_the_question_without_the_small_talk_around_it(text: str, question: str) -> None:
    assert without_small_talk(text) == question


def test_the_turn_of_small_talk_is_the_reply_without_candidates() -> None:
    prediction = small_talk_prediction("hi", "Hello! What can I help you with?", "v1")
    assert prediction.status == SMALL_TALK and prediction.intent is None and prediction.ranking == []
    assert (
        prediction.reply(clarify_message="?", handoff_message="person") == "Hello! What can I help you with?"
    )
    assert not prediction.members_disagree


def test_an_emoji_around_a_question_is_no_complaint() -> None:
    talk = read_small_talk("My card still hasn't come! 😡")
    assert talk.kind is None and talk.left_out == ()  # angry about the card, not the last answer


@pytest.mark.parametrize(
    ("text", "after", "kind"),
    [
        ("ok", AFTER_ANSWER, ACKNOWLEDGEMENT),  # after an answer: "Is there anything else I can help with?"
        ("yes", AFTER_ANSWER, ACKNOWLEDGEMENT),
        # "Is there anything else I can help with?" "yes": the question is on its way (it got the same
        # question again)
        ("yes", AFTER_ANYTHING_ELSE, GO_AHEAD),
        ("sure", AFTER_ANYTHING_ELSE, GO_AHEAD),
        ("yeah actually", AFTER_ANYTHING_ELSE, GO_AHEAD),
        ("ok", AFTER_ANYTHING_ELSE, GOODBYE),  # any other nod to "anything else?" ends the chat
        ("👍", AFTER_ANYTHING_ELSE, GOODBYE),
        ("great", AFTER_ANYTHING_ELSE, GOODBYE),
        # nothing to acknowledge: the first message, or after "Hello! What can I help you with?"
        ("ok", AFTER_NOTHING, GO_AHEAD),
        ("yes", AFTER_NOTHING, GO_AHEAD),
    ],
)
def test_an_acknowledgement_is_read_by_what_came_before(text: str, after: str, kind: str) -> None:
    assert small_talk_kind(text) == ACKNOWLEDGEMENT
    assert acknowledgement_reply(text, after) == kind
