"""Keyword messages ("pin", "top up"): asked about when the knowledge base shares their words among intents
(bot.keywords), answered when one intent has them."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.engine import ANSWERED, CLARIFY, AnsweringEngine, EngineConfig, IntentInfo
from bot.keywords import KEYWORDS_FILE, MIN_EXAMPLES, KeywordIndex, keywords_of


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("pin", ["pin"]),
        ("PIN?", ["pin"]),
        ("my account", ["account"]),
        ("top up", ["top", "up"]),
        ("the exchange rate please", ["exchange", "rate"]),
        ("hi, card", ["card"]),
        ("where is my card", None),  # a question, however short
        ("card not working", None),
        ("how", None),
        ("please help", None),  # no topic
        ("lost card abroad today", None),  # three topic words: a sentence without its verbs
        ("my new card has not come", None),
        ("", None),
    ],
)
def test_a_keyword_message_is_one_or_two_topic_words(text: str, words: list[str] | None) -> None:
    assert keywords_of(text) == words


DATA = {
    "change_pin": ["change my pin", "new pin please", "how do I change the pin", "pin change", "update pin"],
    "pin_blocked": ["my pin is blocked", "pin blocked", "blocked pin code", "unblock my pin", "pin locked"],
    "get_physical_card": [
        "where is the pin for my card",
        "how do I get a plastic card",
        "order a physical card",
        "physical card please",
        "send me a real card",
        "I want a card in the post",
        "card by post",
        "plastic card",
        "a real card",
        "my physical card",
    ],
    "apple_pay": ["apple pay", "can I use apple pay", "apple pay setup", "add card to apple pay", "apple"],
}


def _pairs() -> tuple[list[str], list[str]]:
    texts = [t for rows in DATA.values() for t in rows]
    return texts, [label for label, rows in DATA.items() for _ in rows]


def test_shares_weigh_each_intent_by_its_own_size() -> None:
    index = KeywordIndex.fit(*_pairs(), sorted(DATA))
    pin = index.shares(["pin"])
    assert pin is not None
    # change_pin 5 of 5, pin_blocked 5 of 5, get_physical_card 1 of 10 (and apple_pay none): rates 1, 1, 0.1
    assert pin == pytest.approx(
        {"change_pin": 1 / 2.1, "pin_blocked": 1 / 2.1, "get_physical_card": 0.1 / 2.1}
    )
    assert index.shares(["apple", "pay"]) == {"apple_pay": 1.0}
    assert index.shares(["pin", "blocked"]) == {"pin_blocked": 1.0}
    assert index.shares(["plastic"]) is None  # two examples: fewer than MIN_EXAMPLES
    assert MIN_EXAMPLES == 3
    assert index.shares(["mortgage"]) is None and index.shares([]) is None
    assert index.too_vague("pin", "change_pin")
    assert not index.too_vague("pin blocked", "pin_blocked")
    assert not index.too_vague("how do I change my pin", "change_pin")  # a question: not a keyword message
    assert not index.too_vague("apple pay", "apple_pay")


def test_the_index_round_trips_through_its_file(tmp_path: Path) -> None:
    index = KeywordIndex.fit(*_pairs(), sorted(DATA), min_share=0.6)
    index.save(tmp_path / KEYWORDS_FILE)
    again = KeywordIndex.load(tmp_path / KEYWORDS_FILE)
    assert again.labels == index.labels and again.min_share == 0.6
    assert np.array_equal(again.example_labels, index.example_labels)
    assert again.postings.keys() == index.postings.keys()
    assert all(np.array_equal(again.postings[w], index.postings[w]) for w in index.postings)
    assert again.shares(["pin"]) == index.shares(["pin"])


def _engine(hashing_encoder: Any, **config: Any) -> AnsweringEngine:
    engine = AnsweringEngine(
        EngineConfig(cv_folds=3, target_precision=0.8, **config), encoders={"minilm": hashing_encoder}
    )
    return engine.fit(*_pairs(), knowledge={n: IntentInfo(answer=f"About {n}.") for n in DATA})


def test_a_vague_keyword_is_asked_about_and_a_clear_one_answered(
    hashing_encoder: Any, tmp_path: Path
) -> None:
    engine = _engine(hashing_encoder)
    assert engine.keywords is not None and engine.keywords.min_share == 0.7
    engine.keywords.min_share = 0.0  # nothing is vague: what the model alone does with "pin"
    alone = engine.predict("pin")
    engine.keywords.min_share = 0.7
    asked = engine.predict("pin")
    assert alone.status == ANSWERED  # the models answer it, with one of three intents that use "pin"
    assert asked.status == CLARIFY and asked.vague and asked.intent is None and asked.answer == ""
    assert alone.intent in {c.intent for c in asked.suggestions}
    assert {c.intent for c in asked.suggestions} >= {"change_pin", "pin_blocked"}
    assert asked.to_dict()["vague"] is True and "vague" not in alone.to_dict()
    assert [name for name, _ in engine.keyword_shares(asked)][:2] == ["change_pin", "pin_blocked"]
    clear = engine.predict("apple pay")
    assert (clear.status, clear.intent, clear.vague) == (ANSWERED, "apple_pay", False)
    assert engine.keyword_shares(clear) == [("apple_pay", 1.0)]
    assert engine.keyword_shares(engine.predict("how do I change my pin")) == []
    # Misspelt keywords are read first: "pni" is "pin".
    assert engine.predict("pni").vague
    # The bundle keeps the index; a bundle built before it has none, and answers as the models do.
    bundle = engine.save(tmp_path / "bundle")
    loaded = AnsweringEngine.load(bundle)
    loaded.encoders = {"minilm": hashing_encoder}
    assert loaded.keywords is not None and loaded.predict("pin").vague
    (bundle / KEYWORDS_FILE).unlink()
    older = AnsweringEngine.load(bundle)
    older.encoders = {"minilm": hashing_encoder}
    assert older.keywords is None and older.predict("pin").status == ANSWERED


def test_no_keyword_share_builds_no_index(hashing_encoder: Any) -> None:
    engine = _engine(hashing_encoder, keyword_share=None)
    assert engine.keywords is None
    assert engine.predict("pin").status == ANSWERED and engine.keyword_shares(engine.predict("pin")) == []
