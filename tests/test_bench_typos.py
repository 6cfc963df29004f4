"""The misspelt-questions benchmark: the typos it makes, and how it scores the corrector (the hashing toy
engine, no encoder)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.conftest import TOY, load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("typos.py")


def test_a_typo_is_one_edit_that_keeps_the_first_letter(bench: Any) -> None:
    from bot.spelling import edit_distance

    rng = random.Random(0)
    for word in ("card", "arrived", "exchange", "transfer", "hasn't") * 20:
        typed = bench.mistype(word, rng)
        assert typed != word and typed[0] == word[0]
        assert round(edit_distance(typed, word)) == 1, (word, typed)


def test_one_typo_a_question_or_a_share_of_the_words(bench: Any) -> None:
    rng = random.Random(1)
    text = "Where is my new card? It has not arrived."
    one = bench.with_typos(text, rng, share=None)
    changed = [a for a, b in zip(text.split(), one.split(), strict=True) if a != b]
    assert len(changed) == 1 and len(changed[0].strip("?.")) >= 4
    assert bench.with_typos(text, rng, share=0.0) == text
    every = bench.with_typos(text, rng, share=1.0)
    assert [a == b for a, b in zip(text.split(), every.split(), strict=True)] == [
        False, True, True, False, False, True, False, False, False,  # "is", "my", "It": under three letters
    ]  # fmt: skip
    assert bench.with_typos("ok 42", rng, share=None) == "ok 42"  # no word to mistype


def test_the_corrector_is_scored_against_reading_as_typed(bench: Any, timing_engine: Any) -> None:
    texts = ["how do i chnage my pni", "whre is my crad", "close my account"]
    labels = ["change_pin", "card_arrival", "terminate_account"]
    figures = bench.read(timing_engine, texts, labels)
    assert figures["questions_changed"] == 2
    assert figures["corrected"]["accuracy"] == 1.0
    assert figures["as_written"]["accuracy"] < 1.0  # the hashing encoder knows none of the typos
    assert timing_engine.spelling is not None  # put back after scoring without it
    assert set(figures["corrected"]) == {"accuracy", "answered", "answered_precision", "declined"}
    assert (
        bench.settings_of(timing_engine.spelling)["counts"] == len(timing_engine.spelling.counts) > len(TOY)
    )
    assert bench.settings_of(None) is None
