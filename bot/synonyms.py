"""Synonyms: the knowledge base's own words for what customers call something else.

A business has words no sentence encoder knows: its product names ("Vault" for a savings pot, "Plus" for
the paid plan), its abbreviations, and the words of a language the encoder reads poorly. Azure question
answering calls these "synonyms" (groups of word alterations), and a project exported from it carries them.
A group holds phrases that mean the same here ("cashpoint", "cash machine", "ATM"); each phrase of a
customer's message that is in a group is read as the group's phrase the knowledge base's examples use most
(the one the models were trained on), before spelling correction and the models read it. Whole words
only, in any case: "atm" is not read in "batman" or "atmosphere", nor "ATM" in "ATMs" (write the plural
as a phrase of its own). The customer's words stay what the reply, the log, reviewers and training see;
the turn log keeps the message as the model read it (``read_as``).

The groups are content, like the answers: an operator edits them and they apply to the served models at once,
without retraining (``AnsweringEngine.update_synonyms``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache


def phrase_key(phrase: str) -> str:
    """How a phrase is compared: lower case, single spaces, a curly apostrophe as a straight one."""
    return " ".join(phrase.lower().replace("’", "'").split())


@dataclass
class Synonyms:
    """The groups as written, and each phrase's reading (``fit``)."""

    groups: tuple[tuple[str, ...], ...] = ()
    reading: dict[str, str] = field(default_factory=dict)  # phrase key -> the phrase it is read as
    # each phrase's first word -> the phrases that start with it
    _by_first: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fit(cls, groups: Sequence[Sequence[str]], uses: Callable[[str], int] | None = None) -> Synonyms:
        """``uses(phrase)``: how much the knowledge base's examples use a phrase; each group is read as its
        most used phrase (the first written of equals, or with ``uses`` None)."""
        # each phrase once (the first as written), and a group of one phrase is none
        unique: list[tuple[str, ...]] = []
        for group in groups:
            phrases: dict[str, str] = {}
            for phrase in group:
                if phrase.strip():
                    phrases.setdefault(phrase_key(phrase), " ".join(phrase.split()))
            if len(phrases) > 1:
                unique.append(tuple(phrases.values()))
        kept = tuple(unique)
        reading: dict[str, str] = {}
        for group in kept:
            canonical = max(group, key=lambda p: uses(p) if uses is not None else 0)  # first of equals
            for phrase in group:
                if phrase_key(phrase) != phrase_key(canonical):
                    reading[phrase_key(phrase)] = canonical
        return cls(kept, reading)

    def __post_init__(self) -> None:
        for key in self.reading:
            first = _WORD.findall(key)
            if first:  # a phrase without a letter or digit is refused where groups are written
                self._by_first.setdefault(first[0], []).append(key)

    def __bool__(self) -> bool:
        return bool(self.reading)

    def read(self, text: str) -> str:
        """``text`` with each phrase of a group replaced by its group's reading; as it is when none is. Only
        the phrases whose first word is in the message are tried (a set lookup per word), so the cost does
        not grow with the number of groups."""
        if not self.reading:
            return text
        present = set(_WORD.findall(text.lower()))
        keys = {k for w in present for k in self._by_first.get(w, ())}
        if not keys:
            return text
        pattern = _pattern(tuple(sorted(keys, key=lambda k: (-len(k), k))))  # longest first
        return pattern.sub(lambda m: self.reading[phrase_key(m.group(0))], text)


_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1024)
def _pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    """The phrases as whole words, any case; a space in a phrase matches any run of whitespace."""
    body = "|".join(r"\s+".join(map(re.escape, k.split())) for k in keys)
    # not inside a word, nor joined to one by an apostrophe ("ATM's"); a quote around it is no part of it
    return re.compile(rf"(?<!\w)(?<!\w['’])(?:{body})(?!\w)(?!['’]\w)", re.IGNORECASE)
