"""Which language a message the bot declines is written in, and the line that tells the customer.

A knowledge base in English reads "Wo ist meine Karte?" as nothing it knows: the model declines it as off its
topic, and the customer was told, in English, that the bot has no answer, when it has one in another
language. A message the bot declines (and only such a one: an answer or a "did you mean" is never changed)
that the language identifier finds, with at least ``THRESHOLD`` probability, in a language other than the
knowledge base's is answered with a line saying the bot answers in the knowledge base's language only, in
the customer's language where one is written below (``REPLIES``, for an English knowledge base) and in the
knowledge base's, with a person one click away as before.

The identifier is py3langid (a fork of langid.py, Lui & Baldwin 2012: naive Bayes over byte n-grams, its
model inside the wheel, nothing downloaded), restricted to ``LANGUAGES``: with all its 97 languages it reads
"how do I get a pin for my card" as Nigerian Pidgin (0.76). Restricted, none of 13,436 English messages
(BANKING77's 13,083 questions, the English texts of bench/data) reaches 0.6 for another language, while the
56 questions of bench/data/other_languages.csv (7 languages, the threshold chosen on them) all reach 0.77,
and 31 written after the threshold was chosen (12 languages) all reach 0.73 (bench/other_languages.py).
About 0.04 ms a message.
"""

from __future__ import annotations

import threading
from typing import Any

from bot.engine import Prediction

# The candidates: widely written languages with their own words for a bank's business (not English-based
# creoles, which short English questions resemble).
LANGUAGES = (
    "ar bg ca cs da de el en es et fi fr he hi hr hu id it ja ko lt lv ms nl no pl pt ro ru sk sl sv th tr "
    "uk vi zh"
).split()
THRESHOLD = 0.7  # probability of the other language (bench/other_languages.py)
NAMES = dict(
    zip(
        LANGUAGES,
        (
            "Arabic Bulgarian Catalan Czech Danish German Greek English Spanish Estonian Finnish French "
            "Hebrew Hindi Croatian Hungarian Indonesian Italian Japanese Korean Lithuanian Latvian "
            "Malay Dutch Norwegian Polish Portuguese Romanian Russian Slovak Slovenian Swedish Thai "
            "Turkish Ukrainian Vietnamese Chinese"
        ).split(),
        strict=True,
    )
)

# "Sorry, I can only answer in English" for a knowledge base in English, in the customer's language; the
# deployment's own line (Settings.other_language_message) follows it.
REPLIES = {
    "de": "Entschuldigung, ich kann nur auf Englisch antworten.",
    "es": "Lo siento, solo puedo responder en inglés.",
    "fr": "Désolé, je ne peux répondre qu'en anglais.",
    "it": "Mi dispiace, posso rispondere solo in inglese.",
    "nl": "Sorry, ik kan alleen in het Engels antwoorden.",
    "pl": "Przepraszam, mogę odpowiadać tylko po angielsku.",
    "pt": "Desculpe, só consigo responder em inglês.",
}

_IDENTIFIER: Any = None
_LOCK = threading.Lock()


def load_identifier(languages: list[str] | None = LANGUAGES) -> Any:
    """A py3langid identifier with normalised probabilities over ``languages`` (None: all 97 it knows)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if languages is not None:
        identifier.set_languages(languages)
    return identifier


def _identifier() -> Any:
    """The language identifier, loaded once (a few MB, about a second) on first use."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        with _LOCK:
            if _IDENTIFIER is None:
                _IDENTIFIER = load_identifier()
    return _IDENTIFIER


def identify(text: str) -> tuple[str, float]:
    """(language code, probability) among ``LANGUAGES``."""
    language, probability = _identifier().classify(text)
    return str(language), float(probability)


def check_language(code: str) -> None:
    """Refuse a knowledge-base language the identifier cannot tell (every message would seem another)."""
    if code and code not in LANGUAGES:
        raise ValueError(
            f"language {code!r} is not one HelpLoop can identify; use one of {', '.join(LANGUAGES)}, or "
            "leave it empty to turn the check off"
        )


def other_language(text: str, expected: str, *, threshold: float = THRESHOLD) -> str | None:
    """The language ``text`` is written in when that is confidently not ``expected``; None otherwise (the
    expected language, or not sure: single words rarely reach the threshold)."""
    check_language(expected)
    if not text.strip():
        return None
    language, probability = identify(text)
    return language if language != expected and probability >= threshold else None


def declined_in_language(prediction: Prediction, message: str, expected: str) -> str | None:
    """The other language of a message the bot declines as off its topic (``Prediction.off_topic``); None
    for any other reply, or with no knowledge-base language set (``expected`` empty)."""
    return other_language(message, expected) if expected and prediction.off_topic else None


def other_language_reply(language: str, message: str, *, expected: str) -> str:
    """The reply to a declined message in ``language``: the line in that language where one is written (for
    an English knowledge base), then the deployment's ``message``."""
    line = REPLIES.get(language) if expected == "en" else None
    return f"{line}\n\n{message}" if line else message
