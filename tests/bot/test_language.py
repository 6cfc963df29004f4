"""The language of a message the bot declines (bot.language): English questions are never another language,
questions in other languages are, with the reply in the customer's language where there is one."""

from __future__ import annotations

import dataclasses

import pytest

from bot.engine import ANSWERED, HANDOFF, Prediction
from bot.language import (
    LANGUAGES,
    REPLIES,
    check_language,
    declined_in_language,
    identify,
    other_language,
    other_language_reply,
)
from tests.conftest import TOY

ENGLISH = [
    "how do i get a pin for my card",  # Nigerian Pidgin (0.76) among all the identifier's languages
    "how do i find top up for cash deposit",
    "Can I request a card?",
    "my crad hasnt arived",
    "what's the weather like in Paris tomorrow?",
    "I want to make a complaint",
    *[text for texts in TOY.values() for text in texts],
]
OTHER = {
    "Wo ist meine Karte? Ich warte seit zwei Wochen": "de",
    "Hola, mi tarjeta no ha llegado todavía": "es",
    "Ma carte bancaire est bloquée": "fr",
    "Dove posso cambiare il mio PIN?": "it",
    "Onde está o meu cartão?": "pt",
    "mijn kaart werkt niet": "nl",
    "Gdzie jest moja karta?": "pl",
    "Моя карта ещё не пришла": "ru",
}


@pytest.mark.parametrize("text", ENGLISH)
def test_english_questions_are_not_another_language(text: str) -> None:
    assert other_language(text, "en") is None


@pytest.mark.parametrize(("text", "language"), OTHER.items())
def test_questions_in_other_languages_are_told_apart(text: str, language: str) -> None:
    assert other_language(text, "en") == language
    assert identify(text)[0] == language
    assert other_language(text, language) is None  # a knowledge base in that language: no other language


def test_single_words_and_blanks_are_never_sure_enough() -> None:
    for word in ("hola", "hallo", "bonjour", "danke", "pizza", "lol", "ok", "pin", "", "   "):
        assert other_language(word, "en") is None, word


def test_the_reply_is_in_the_customers_language_then_the_deployments_line() -> None:
    line = "Sorry, I can only answer questions in English."
    assert other_language_reply("de", line, expected="en") == f"{REPLIES['de']}\n\n{line}"
    assert other_language_reply("sv", line, expected="en") == line  # no Swedish line written
    # A knowledge base in another language: the English-only lines would be wrong, the deployment's stays.
    assert other_language_reply("es", "Entschuldigung, nur auf Deutsch.", expected="de") == (
        "Entschuldigung, nur auf Deutsch."
    )
    assert set(REPLIES) <= set(LANGUAGES) and all("ingl" in REPLIES[c] for c in ("es", "it"))


def test_only_a_declined_message_is_read_for_its_language() -> None:
    declined = Prediction(
        text="Wo ist meine Karte?",
        status=HANDOFF,
        intent=None,
        answer="",
        confidence=0.2,
        margin=0.1,
        ranking=[],
        member_scores={},
        suggestions=[],
        model_version="v",
        unfamiliar=True,
    )
    message = "Wo ist meine Karte? Ich warte seit zwei Wochen"
    assert declined.off_topic and declined_in_language(declined, message, "en") == "de"
    assert declined_in_language(declined, message, "") is None  # the check off
    handed_over = dataclasses.replace(declined, unfamiliar=False)  # the bot chose a person: not declined
    assert declined_in_language(handed_over, message, "en") is None
    answered = dataclasses.replace(declined, status=ANSWERED, intent="card_arrival", unfamiliar=False)
    assert declined_in_language(answered, message, "en") is None


def test_a_language_the_identifier_cannot_tell_is_refused() -> None:
    check_language("")  # off
    check_language("de")
    with pytest.raises(ValueError, match="'xx' is not one HelpLoop can identify"):
        check_language("xx")
    with pytest.raises(ValueError, match="not one HelpLoop can identify"):
        other_language("Wo ist meine Karte?", "xx")
