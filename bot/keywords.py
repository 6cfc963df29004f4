"""Keyword messages: "pin", "account", "top up" typed alone are asked about, not guessed at.

A customer who types one or two words names a topic, not a question. The models still score it, and on a
topic several intents share the calibrated confidence is no guide: on BANKING77 the demo answered "pin" with
*get a physical card* at 0.99 and "account" with *close my account* at 0.77, though the knowledge base uses
"pin" about as much for changing a PIN and for a blocked one. Of 3,000 keyword versions of validation
questions (bench/keywords.py), 45 % of those answered were answered wrong.

A message is a keyword message when it has at most ``MAX_WORDS`` words, no question word, verb of asking,
pronoun or negation (``STRUCTURE``: "where is my card" is a question, whatever its length), and one or two
words left once articles, possessives and politeness (``FILLER``) are set aside. The knowledge base's
examples that use all of those words say how the topic is shared among intents: each intent's share of
them, as a rate of its own examples so that large intents do not win by size. An answer to a keyword message
stands only when the answered intent has at least ``min_share`` of that; otherwise the bot asks "did you
mean" with its top candidates. Words too rare in the examples (fewer than ``MIN_EXAMPLES`` use them all)
leave the model's decision as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bot.spelling import words_of

KEYWORDS_FILE = "keywords.npz"
MAX_WORDS = 4
MIN_EXAMPLES = 3
# Words that make a message a question or a sentence rather than a topic.
STRUCTURE = frozenset(
    """
    what whats what's where wheres where's when why how who which whose whom
    is are was were be been being am do does did done doing have has had having can could will would shall
    should may might must need needs want wants wanna get got
    i i'm im i've ive i'd me we us you it it's its they them he she this that these those there here
    not no never don't dont doesn't doesnt didn't didnt can't cant won't wont isn't isnt aren't arent
    wasn't wasnt haven't havent hasn't hasnt
    to of for from with without at by into onto about if so but or and than then because
    """.split()
)
FILLER = frozenset("a an the my your our please pls plz thanks thank thx hi hello hey help".split())


def keywords_of(text: str) -> list[str] | None:
    """The topic words of a keyword message ("pin", "top up", "my account" -> ["account"]); None when the
    message is a question or a sentence."""
    words = words_of(text)
    if not words or len(words) > MAX_WORDS or any(w in STRUCTURE for w in words):
        return None
    topic = [w for w in words if w not in FILLER]
    return topic if 1 <= len(topic) <= 2 else None


@dataclass
class KeywordIndex:
    """Which knowledge-base examples use each word; built with the model, saved in the bundle."""

    labels: list[str] = field(default_factory=list)  # the intents, as the engine orders them
    example_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    postings: dict[str, np.ndarray] = field(default_factory=dict)  # word -> sorted example rows
    min_share: float = 0.5
    _sizes: np.ndarray = field(init=False, repr=False, compare=False)  # examples per intent (at least 1)

    def __post_init__(self) -> None:
        self._sizes = np.maximum(np.bincount(self.example_labels, minlength=len(self.labels)), 1)

    @classmethod
    def fit(
        cls, texts: Sequence[str], labels: Sequence[str], intents: Sequence[str], **options: float
    ) -> KeywordIndex:
        column = {label: i for i, label in enumerate(intents)}
        rows: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            for word in dict.fromkeys(words_of(text)):
                rows.setdefault(word, []).append(row)
        return cls(
            labels=list(intents),
            example_labels=np.array([column[label] for label in labels], dtype=np.int32),
            postings={word: np.array(found, dtype=np.int32) for word, found in rows.items()},
            **options,
        )

    def shares(self, words: Iterable[str]) -> dict[str, float] | None:
        """Each intent's share of the examples that use all ``words``, weighed by the intent's own number
        of examples; None when fewer than ``MIN_EXAMPLES`` use them all."""
        found: np.ndarray | None = None
        for word in words:
            rows = self.postings.get(word)
            if rows is None:
                return None
            found = rows if found is None else np.intersect1d(found, rows, assume_unique=True)
        if found is None or found.size < MIN_EXAMPLES:
            return None
        used = np.bincount(self.example_labels[found], minlength=len(self.labels))
        rate = used / self._sizes
        total = float(rate.sum())
        return {self.labels[i]: float(rate[i]) / total for i in np.flatnonzero(used)}

    def shares_of(self, text: str) -> dict[str, float] | None:
        """``shares`` of a keyword message's words; None for any other message."""
        words = keywords_of(text)
        return self.shares(words) if words else None

    def too_vague(self, text: str, intent: str) -> bool:
        """Whether an answer with ``intent`` to ``text`` is a guess: a keyword message whose words the
        knowledge base uses for other intents as much as for this one."""
        shares = self.shares_of(text)
        return shares is not None and shares.get(intent, 0.0) < self.min_share

    # ---------------------------------------------------------------------------------- bundle

    def save(self, path: Path) -> None:
        words = sorted(self.postings)
        lengths = np.array([self.postings[w].size for w in words], dtype=np.int64)
        np.savez_compressed(
            path,
            labels=np.array(self.labels, dtype=str),
            example_labels=self.example_labels,
            words=np.array(words, dtype=str),
            offsets=np.concatenate([[0], np.cumsum(lengths)]),
            rows=np.concatenate([self.postings[w] for w in words]) if words else np.zeros(0, np.int32),
            min_share=np.array(self.min_share),
        )

    @classmethod
    def load(cls, path: Path) -> KeywordIndex:
        with np.load(path, allow_pickle=False) as data:
            offsets, rows = data["offsets"], data["rows"]
            return cls(
                labels=[str(label) for label in data["labels"]],
                example_labels=data["example_labels"].astype(np.int32),
                postings={
                    str(word): rows[offsets[i] : offsets[i + 1]].astype(np.int32)
                    for i, word in enumerate(data["words"])
                },
                min_share=float(data["min_share"]),
            )
