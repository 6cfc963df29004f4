"""The other-languages benchmark's parts (no model, a second): its data, how flags are counted, and a run
without the engine on a tiny stand-in for BANKING77."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.language import LANGUAGES, THRESHOLD
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("other_languages.py")


def test_the_questions_are_two_sets_in_languages_the_identifier_knows(bench: Any) -> None:
    others = bench.read_other_languages()
    assert [sum(o["set"] == s for o in others) for s in ("first", "second")] == [56, 31]
    assert {o["language"] for o in others} <= set(LANGUAGES) - {"en"}
    assert len({o["language"] for o in others if o["set"] == "second"}) == 12


def test_flags_are_counted_per_set_and_threshold(bench: Any) -> None:
    others = [
        {"text": "a", "language": "de", "set": "first"},
        {"text": "b", "language": "fr", "set": "first"},
        {"text": "c", "language": "es", "set": "second"},
    ]
    reads = [("de", 0.95), ("it", 0.75), ("es", 0.65)]  # the second in the wrong language
    english = [("en", 0.99), ("nl", 0.72), ("fr", 0.4)]
    table = bench.counts(others, reads, english)
    assert table[f"{THRESHOLD:g}"] == {
        "first": {"questions": 2, "flagged": 2, "right_language": 1},
        "second": {"questions": 1, "flagged": 0, "right_language": 0},
        "english_flagged": 1,
    }
    assert table["0.9"]["first"]["flagged"] == 1 and table["0.9"]["english_flagged"] == 0
    assert table["0.6"]["second"]["right_language"] == 1


def test_a_run_without_the_engine_writes_its_figures(bench: Any, tmp_path: Path, monkeypatch: Any) -> None:
    data = tmp_path / "banking77"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.csv").write_text(
            "text,category\nwhere is my card,card_arrival\nhow do i get a pin for my card,get_physical_card\n"
        )
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["x", "--data", str(data), "--out", str(out), "--no-engine"])
    bench.main()
    result = json.loads((out / "other_languages.json").read_text())
    assert (
        result["english_messages"]["banking77 train"] == 2
        and result["english_messages"]["off_topic.csv"] == 60
    )
    restricted, every = result["restricted"], result["all"]
    at = f"{THRESHOLD:g}"
    assert restricted["by_threshold"][at]["first"]["right_language"] == 56
    assert restricted["by_threshold"][at]["second"]["right_language"] == 31
    assert restricted["by_threshold"][at]["english_flagged"] == 0
    assert restricted["highest_other_language_probability_of_an_english_message"] < THRESHOLD
    assert min(restricted["lowest_probability_of_an_other_language_question"].values()) >= THRESHOLD
    # Among all the identifier's languages, "how do i get a pin for my card" reads as Nigerian Pidgin.
    assert every["by_threshold"][at]["english_flagged"] >= 2
    assert "engine" not in result
