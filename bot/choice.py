"""A "did you mean" answered by typing: "the first one", "2", "pending transfer", "none of these".

The widget shows its choices as chips, but customers type their answer as often as they click (and the
Rasa and Azure channels may show no buttons at all). Read as a new question, "the second one" or "none of
these" is off every intent's topic, and the bot declined it with the off-topic line. A typed answer is read
against the choices the latest reply showed, and only then: by its place ("the first one", "2", "option
three", "the last one"), by the words of one choice's title or intent name and of no other ("the pending
one" after *How long transfers take* / *Pending transfer*), or as none of them ("none of these", "neither",
"something else", a bare "no"); a bare "yes" picks the one choice there is, or asks which one of several
(``WHICH_ONE``). Anything else is a message like any other, read by the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.small_talk import AFFIRMATIVE

# The customer's answer that none of the choices fits.
NONE_OF_THESE = "none_of_these"
# A yes to several choices ("Did you mean one of these?" "yes"): which one is not said, so the bot asks.
WHICH_ONE = "which_one"

_ORDINALS = {
    "1": 1, "1st": 1, "first": 1, "one": 1, "top": 1,
    "2": 2, "2nd": 2, "second": 2, "two": 2,
    "3": 3, "3rd": 3, "third": 3, "three": 3,
    "4": 4, "4th": 4, "fourth": 4, "four": 4,
    "5": 5, "5th": 5, "fifth": 5, "five": 5,
}  # fmt: skip
_LEAD = (
    r"(?:(?:yes|yeah|yep|yup|ok(?:ay)?|sorry|um+|er+|no|oh)\s+)?"
    r"(?:(?:i\s+(?:meant|mean|want|need|would\s+like|'?d\s+like)|(?:it'?s|its|it\s+is|it\s+was)|"
    r"(?:i\s+)?(?:choose|pick|take))\s+)?"
)
_ORDER = re.compile(
    rf"^{_LEAD}(?:the\s+)?(?:(?:option|number|no|choice|answer)\s+){{0,2}}#?\s*"
    rf"(?P<place>{'|'.join(_ORDINALS)}|last|bottom|middle)"
    r"(?:\s+(?:one|option|choice|answer))?(?:\s+(?:please|pls|thanks|thank\s+you|then))?$",
    re.IGNORECASE,
)
_NONE = re.compile(
    r"^(?:(?:no|nope|sorry|nah|um+|hm+|er+|uh+|well|actually)\s+)?(?:(?:it'?s|its|it\s+is)\s+)?"
    r"(?:none(?:\s+of\s+(?:these|those|them|the\s+above|it|that|this))?|neither(?:\s+of\s+"
    r"(?:these|those|them|the\s+two))?|something\s+else|(?:not|no)\s+(?:any\s+of\s+)?(?:these|those|them)"
    r"|(?:none|neither)\s+(?:fits?|is\s+right|are\s+right|apply|applies)"
    # a bare no: "did you mean …?" "no" (it was read as a goodbye: "All right. … Goodbye!")
    r"|no+|nope|nah|no\s+(?:it'?s\s+not|it\s+is\s+not|it\s+isn'?t|that'?s\s+not\s+it|not\s+(?:that|really))"
    r"|not\s+(?:really|quite|that|exactly))"
    r"(?:\s+(?:please|sorry|thanks|unfortunately|really|entirely|altogether|completely))?$",
    re.IGNORECASE,
)
# Words that say nothing of which choice is meant: "I meant the one about pending transfers".
_FILLER = frozenset(
    "the a an one i meant mean it it's its is was about for with on my please pls yes yeah yep ok okay "
    "that this question option choice answer want need like d regarding re of to will would do does did can "
    "could should no sorry oh um just".split()
)
_WORD = re.compile(r"[a-z0-9]+")
# A longer message is a question of its own, whatever words it shares with a choice: at most this many words,
# and this many that name something (not _FILLER).
MAX_WORDS = 10
MAX_NAMING_WORDS = 4


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("'s", "").replace("_", " "))


def _same_word(typed: str, word: str) -> bool:
    """A typed word names a choice's word: the same, or one begins the other and the shorter has at least 4
    letters ("transfer" / "transfers", "pend" / "pending")."""
    if typed == word:
        return True
    short, long_ = sorted((typed, word), key=len)
    return len(short) >= 4 and long_.startswith(short)


def read_choice(text: str, choices: Sequence[tuple[str, str]]) -> str | None:
    """The intent of ``choices`` (``(intent, title)`` as shown, in order) that ``text`` picks,
    ``NONE_OF_THESE`` when it says none fits, ``WHICH_ONE`` for a yes to several, None when it is no answer
    to the choices (a message for the model)."""
    if not choices:
        return None
    stripped = re.sub(r"[^\w\s#']+", " ", text).strip()
    stripped = re.sub(r"\s+", " ", stripped)
    if not stripped or len(stripped.split()) > MAX_WORDS:
        return None
    if _NONE.match(stripped):
        return NONE_OF_THESE
    if AFFIRMATIVE.match(stripped):  # "yes": the one choice there is, or which one of several?
        return choices[0][0] if len(choices) == 1 else WHICH_ONE
    order = _ORDER.match(stripped)
    if order is not None:
        place = order.group("place").lower()
        if place == "middle":  # of three (of an even number, there is none)
            index = (len(choices) + 1) // 2 if len(choices) % 2 else 0
        else:
            index = len(choices) if place in ("last", "bottom") else _ORDINALS[place]
        return choices[index - 1][0] if 1 <= index <= len(choices) else None
    typed = [w for w in _words(stripped) if w not in _FILLER]
    if not typed or len(typed) > MAX_NAMING_WORDS:
        return None
    named = [
        intent
        for intent, title in choices
        if all(any(_same_word(t, w) for w in _words(f"{title} {intent}")) for t in typed)
    ]
    return named[0] if len(named) == 1 else None
