"""What can be read off a knowledge base's text alone, before any model: the same question filed under two
intents (training then teaches both labels for it), the same question twice in one intent (it counts double),
intents with too few examples to learn or to calibrate on, and one answer given by several intents.
``training.kb_check`` adds what the model says (likely label errors, intents it mixes up)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.kb_files import KnowledgeBaseData

# The engine calibrates on 5 folds: an intent with fewer examples is missing from some of them (the whole
# knowledge base then falls back to fewer, larger folds), and a handful of rows cannot say how sure the
# model is of it.
FEW_EXAMPLES = 5
_TRAILING = " ?!.,;:…"


def question_key(text: str) -> str:
    """Two spellings of one question: case, runs of white space and closing punctuation do not count."""
    return " ".join(text.split()).casefold().rstrip(_TRAILING)


@dataclass(frozen=True)
class Place:
    intent: str
    text: str  # as spelled there
    source: str  # "knowledge base", or "verified pair (item #N)"


@dataclass(frozen=True)
class Conflict:
    question: str
    places: tuple[Place, ...]

    @property
    def intents(self) -> list[str]:
        return sorted({place.intent for place in self.places})

    def to_dict(self) -> dict[str, object]:
        return {
            "question": self.question,
            "intents": self.intents,
            "places": [{"intent": p.intent, "text": p.text, "source": p.source} for p in self.places],
        }


@dataclass(frozen=True)
class Duplicate:
    intent: str
    spellings: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"intent": self.intent, "spellings": list(self.spellings)}


@dataclass(frozen=True)
class ThinIntent:
    intent: str
    examples: int

    def to_dict(self) -> dict[str, object]:
        return {"intent": self.intent, "examples": self.examples}


@dataclass(frozen=True)
class SharedAnswer:
    """Several intents give the same answer: a copy-paste slip, or intents that could be one."""

    answer: str
    intents: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"answer": self.answer, "intents": list(self.intents)}


@dataclass
class TextFindings:
    conflicts: list[Conflict]
    duplicates: list[Duplicate]
    thin: list[ThinIntent]
    shared_answers: list[SharedAnswer]


def text_findings(
    kb: KnowledgeBaseData,
    *,
    pairs: Iterable[tuple[str, str, int]] = (),
    few: int = FEW_EXAMPLES,
) -> TextFindings:
    """``pairs``: the crowd's verified (text, intent, item id) that training adds to the examples."""
    places: dict[str, list[Place]] = {}
    duplicates: list[Duplicate] = []
    for name in sorted(kb.intents):
        spellings: dict[str, list[str]] = {}
        for text in kb.intents[name].examples:
            spellings.setdefault(question_key(text), []).append(text)
        for key, texts in spellings.items():
            places.setdefault(key, []).append(Place(name, texts[0], "knowledge base"))
            if len(texts) > 1:
                duplicates.append(Duplicate(name, tuple(texts)))
    for text, intent, item_id in pairs:
        if intent in kb.intents:
            places.setdefault(question_key(text), []).append(
                Place(intent, text, f"verified pair (item #{item_id})")
            )
    conflicts = [
        Conflict(spots[0].text, tuple(spots))
        for spots in places.values()
        if len({spot.intent for spot in spots}) > 1
    ]
    conflicts.sort(key=lambda c: (c.intents, c.question.casefold()))
    thin = sorted(
        (ThinIntent(name, len(i.examples)) for name, i in kb.intents.items() if len(i.examples) < few),
        key=lambda t: (t.examples, t.intent),
    )
    answers: dict[str, list[str]] = {}
    for name in sorted(kb.intents):
        answer = kb.intents[name].answer
        if answer.strip():
            answers.setdefault(" ".join(answer.split()).casefold(), []).append(name)
    shared = [
        SharedAnswer(kb.intents[names[0]].answer, tuple(names))
        for names in answers.values()
        if len(names) > 1
    ]
    return TextFindings(conflicts, duplicates, thin, shared)
