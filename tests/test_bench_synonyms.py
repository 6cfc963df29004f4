"""The synonyms benchmark: the questions it asks with another word, and how it scores the engine with and
without the synonyms (the hashing toy engine, no encoder)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("synonyms.py")


def test_each_group_holds_its_reading_once_and_no_phrase_twice(bench: Any) -> None:
    from core.kb_files import check_synonyms

    assert check_synonyms("GROUPS", [(None, "groups", g) for g in bench.GROUPS]) == bench.GROUPS


def test_the_questions_are_asked_with_the_other_phrase_and_scored_both_ways(
    bench: Any, timing_engine: Any
) -> None:
    texts = ["reset pin at atm", "where is my card", "change pin number", "close my account"]
    labels = ["change_pin", "card_arrival", "change_pin", "terminate_account"]
    before = timing_engine.synonyms
    try:
        timing_engine.update_synonyms([["atm", "cashpoint"], ["card", "plastic"]])
        asked = bench.substituted(timing_engine, texts, labels)
        assert asked == {
            "cashpoint": (["reset pin at cashpoint"], ["change_pin"]),
            "plastic": (["where is my plastic"], ["card_arrival"]),
        }
        figures = bench.with_and_without(timing_engine, ["where is my plastic"], ["card_arrival"])
        assert figures["questions"] == 1 and figures["read_differently"] == 1
        assert figures["with"]["accuracy"] == 1.0 and figures["with"]["answered_right"] == 1.0
        assert figures["without"]["accuracy"] <= figures["with"]["accuracy"]
        assert set(figures["with"]) == {"accuracy", "answered", "answered_right", "declined"}
        assert timing_engine.synonyms.reading == {"cashpoint": "atm", "plastic": "card"}  # put back
        assert bench.whole("cash machine").sub("ATM", "the Cash  Machine ate it") == "the ATM ate it"
    finally:
        timing_engine.synonyms = before
