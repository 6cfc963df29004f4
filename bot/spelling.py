"""Misspelt words read as the knowledge base's own words before the models see a message.

Customers type fast: "my crad hasnt arived yet" was declined as off topic by the demo, and "how do i chnage
my pin" answered as *get a physical card* at 0.83 confidence, while the same questions spelt right are
answered right at 0.99. The sentence encoders split an unknown word into pieces that mean something else.

A word is left alone when the knowledge base's examples use it, or when it is a whole word of the encoder's
tokenizer vocabulary (an English word the model knows: "dose", "mortgage"). Any other word of letters is
replaced by the knowledge base's most used word within one edit, two for words of ``long_word`` letters or
more (Damerau–Levenshtein: a letter dropped, doubled, swapped with its neighbour or mistyped, an
apostrophe left out; of two words as near, the one a neighbouring key explains wins: "aple" is "apple",
not "able"). Words of three letters are read back only from a swap or a dropped letter ("pni", "crd"),
since most unknown ones are acronyms and slang ("bic", "idk"); shorter words and words with digits are never
touched, nor is a word that is another with letters added at one end ("unblocked" is not "blocked"), nor
a word with no knowledge-base word that near (a name, a product the knowledge base does not mention). The
lookup is a symmetric-delete index over the knowledge base's words: no word list to ship, no per-message
search over the vocabulary (a fraction of a millisecond a message).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
SPELLING_FILE = "spelling.json"
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# A letter typed for one that is not beside it on the keyboard: still one edit, but the less likely one
# when two words are as near ("aple": "apple" with a letter dropped before "able" with p for b).
FAR_KEY = 0.01


def neighbours(letter: str) -> str:
    """The letters beside ``letter`` on its QWERTY row and touching it on the rows above and below (each row
    sits half a key right of the one above: "s" touches "w" and "e" above, "z" and "x" below)."""
    for r, row in enumerate(KEYBOARD_ROWS):
        if letter in row:
            c = row.index(letter)
            near = row[max(c - 1, 0) : c + 2].replace(letter, "")
            if r > 0:
                near += KEYBOARD_ROWS[r - 1][c : c + 2]
            if r + 1 < len(KEYBOARD_ROWS):
                near += KEYBOARD_ROWS[r + 1][max(c - 1, 0) : c + 1]
            return near
    return ""


NEAR = {letter: set(neighbours(letter)) for row in KEYBOARD_ROWS for letter in row}


def _normal(word: str) -> str:
    return word.lower().replace("’", "'")


def words_of(text: str) -> list[str]:
    """The words of ``text``, lower case, a curly apostrophe read as a straight one."""
    return [_normal(w) for w in WORD.findall(text)]


def _deletes(word: str, depth: int) -> set[str]:
    """``word`` with up to ``depth`` characters deleted (itself included)."""
    out = {word}
    for n in range(1, min(depth, len(word) - 1) + 1):
        for drop in combinations(range(len(word)), n):
            out.add("".join(c for i, c in enumerate(word) if i not in drop))
    return out


def edit_distance(a: str, b: str) -> float:
    """Optimal-string-alignment Damerau–Levenshtein distance (an adjacent swap is one edit), a letter typed
    for one that is not its keyboard neighbour counting ``FAR_KEY`` more."""
    previous2: list[float] = []
    previous: list[float] = [float(j) for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        current = [float(i)] + [0.0] * len(b)
        for j in range(1, len(b) + 1):
            x, y = a[i - 1], b[j - 1]
            cost = 0.0 if x == y else 1.0 if y in NEAR.get(x, ()) else 1.0 + FAR_KEY
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


SHORTEST = 3  # the shortest word ever read as another (below ``min_length``: a swap or a dropped letter)


def _swaps(word: str) -> set[str]:
    """``word`` with two neighbouring letters swapped, each way it can be."""
    return {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)} - {word}


# English prefixes and endings a known word may take and still be a word (the tokenizer has the stem whole):
# ending -> what the stem may have ended in instead ("retriev" + "ing" from "retrieve", "remed" + "ies" from
# "remedy", "stopp" + "ed" from "stop").
PREFIXES = ("re", "un", "dis", "non", "pre", "mis", "de", "in", "im", "over", "under", "out")
ENDINGS: dict[str, tuple[str, ...]] = {
    "'s": ("",), "s'": ("",), "s": ("",), "es": ("", "e"), "ies": ("y",), "ied": ("y",), "ier": ("y",),
    "ed": ("", "e"), "ing": ("", "e"), "er": ("", "e"), "ers": ("", "e"), "est": ("", "e"),
    "ly": ("",), "ily": ("y",), "ion": ("", "e"), "ions": ("", "e"), "ation": ("", "e"), "ations": ("", "e"),
    "ment": ("",), "ments": ("",), "able": ("", "e"), "ness": ("",), "al": ("", "e"), "ize": ("", "e"),
    "ise": ("", "e"), "ized": ("", "e"), "ised": ("", "e"), "izing": ("", "e"), "ising": ("", "e"),
}  # fmt: skip
MIN_STEM = 3


def _stems(word: str) -> set[str]:
    """``word`` and the words it may be made of with one prefix and one ending taken off."""
    bases = {word} | {
        word[len(p) :] for p in PREFIXES if word.startswith(p) and len(word) - len(p) >= MIN_STEM
    }
    stems = set(bases)
    for base in bases:
        for ending, stem_ends in ENDINGS.items():
            if base.endswith(ending) and len(base) - len(ending) >= MIN_STEM:
                stem = base[: -len(ending)]
                stems |= {stem + end for end in stem_ends}
                if len(stem) > MIN_STEM and stem[-1] == stem[-2]:  # "stopped", "transferring"
                    stems.add(stem[:-1])
    return stems


def _same_start(typed: str, word: str) -> bool:
    """People seldom get a word's first letter wrong: ``word`` starts as ``typed`` does, or with its first
    two letters swapped back ("acrd" for "card"). Keeps "pend" from "end", "eBay" from "bay"."""
    return typed[0] == word[0] or (len(typed) > 1 and typed[1] == word[0] and typed[0] == word[1])


def _affixed(a: str, b: str) -> bool:
    """One word is the other with two or more letters added at its start or its end."""
    short, long = sorted((a, b), key=len)
    return len(long) - len(short) >= 2 and (long.startswith(short) or long.endswith(short))


def tokenizer_words(tokenizer_file: Path) -> set[str]:
    """The whole words of a Hugging Face ``tokenizer.json`` vocabulary, lower case (WordPiece tokens not
    starting "##", BPE tokens starting "Ġ", Unigram tokens starting "▁"); empty when it has none."""
    try:
        model = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("model", {})
    except (OSError, ValueError):
        return set()
    vocab = model.get("vocab")
    kind = model.get("type")
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        tokens = [str(entry[0]) for entry in vocab if entry]
    elif isinstance(vocab, dict):
        tokens = list(vocab)
    else:
        return set()
    if kind == "WordPiece":
        whole = [t for t in tokens if not t.startswith("##")]
    elif kind == "BPE":
        whole = [t[1:] for t in tokens if t.startswith("Ġ")]
    else:
        whole = [t[1:] for t in tokens if t.startswith("▁")]
    return {t.lower() for t in whole if t.isalpha() and len(t) > 1}


@dataclass
class SpellingCorrector:
    """Built from the knowledge base's examples (``fit``) and the tokenizer's words; saved in the bundle."""

    counts: dict[str, int] = field(default_factory=dict)  # knowledge-base word -> examples' uses
    dictionary: frozenset[str] = frozenset()  # other words left alone (the tokenizer's whole words)
    max_distance: int = 2
    min_length: int = 4  # shorter words are read back only from a swap or a dropped letter ("pni", "crd")
    long_word: int = 8  # words shorter than this are corrected by one edit at most
    _index: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fit(cls, texts: Iterable[str], dictionary: Iterable[str] = (), **options: Any) -> SpellingCorrector:
        counts = Counter(w for text in texts for w in words_of(text))
        return cls(counts=dict(counts), dictionary=frozenset(dictionary), **options)

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for word in self.counts:
            if len(word) >= self.min_length - self.max_distance:
                for key in _deletes(word, self.max_distance):
                    index.setdefault(key, []).append(word)
        self._index = index

    def known(self, word: str) -> bool:
        """A word of the knowledge base or of the tokenizer, or one of those with an English prefix or ending
        (the tokenizer has "retrieve" and "install" whole, not "retrieving" or "reinstall")."""
        return self._known(word) or any(self._known(stem) for stem in _stems(word))

    def _known(self, word: str) -> bool:
        return word in self.counts or word in self.dictionary

    def correction(self, word: str) -> str | None:
        """The knowledge-base word ``word`` (lower case) is read as, or None to leave it."""
        if len(word) < SHORTEST or self.known(word) or not word.replace("'", "").isalpha():
            return None
        if len(word) < self.min_length:
            # Short words are acronyms and slang more often than typos ("bic", "cuz", "idk"): only two
            # letters swapped ("pni") or one dropped ("crd") is read back.
            dropped = [w for w in self._index.get(word, ()) if len(w) == len(word) + 1]
            found = [w for w in _swaps(word) if w in self.counts] + dropped
            found = [w for w in found if _same_start(word, w)]
            return min(found, key=lambda w: (-self.counts[w], w)) if found else None
        limit = self.max_distance if len(word) >= self.long_word else min(1, self.max_distance)
        best: tuple[float, int, str] | None = None
        seen: set[str] = set()
        for key in _deletes(word, limit):
            for candidate in self._index.get(key, ()):
                if candidate in seen:
                    continue
                seen.add(candidate)
                distance = edit_distance(word, candidate)
                # the far-key extra never makes one more edit; a word that is the other with letters
                # added at one end is another word ("unblocked", "blocked"), not a typo of it
                if distance < limit + 0.5 and _same_start(word, candidate) and not _affixed(word, candidate):
                    rank = (distance, -self.counts[candidate], candidate)
                    best = rank if best is None or rank < best else best
        return best[2] if best is not None else None

    def correct(self, text: str) -> str:
        """``text`` with each misspelt word replaced (in lower case); the rest of the text as it was."""

        def replace(match: re.Match[str]) -> str:
            found = self.correction(_normal(match.group(0)))
            return found if found is not None else match.group(0)

        return WORD.sub(replace, text)

    # ---------------------------------------------------------------------------------- bundle

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(sorted(self.counts.items())),
            "dictionary": sorted(self.dictionary),
            "max_distance": self.max_distance,
            "min_length": self.min_length,
            "long_word": self.long_word,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpellingCorrector:
        return cls(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            dictionary=frozenset(str(w) for w in data["dictionary"]),
            max_distance=int(data["max_distance"]),
            min_length=int(data["min_length"]),
            long_word=int(data["long_word"]),
        )
