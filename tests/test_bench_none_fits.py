"""The "none fits" benchmark's parts on the toy engine (no encoder download, seconds): which turns would be
reviewed, which questions become out-of-scope rows, how the groups are counted, and one seed end to end."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pytest

from bot.engine import ANSWERED, CLARIFY, HANDOFF, OUT_OF_SCOPE, Candidate, Prediction
from tests.bot.test_engine import toy_rows
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("none_fits.py")


def prediction(status: str, intent: str | None, top: str = "a", disagree: bool = False) -> Prediction:
    tops = [top, "b"] if disagree else [top, top]
    return Prediction(
        text="q",
        status=status,
        intent=intent,
        answer="",
        confidence=0.5,
        margin=0.1,
        ranking=[Candidate(top, 0.5, top)],
        member_scores={f"m{i}": [{"intent": t, "score": 0.5}] for i, t in enumerate(tops)},
        suggestions=[],
        model_version="v",
    )


class Never:
    def random(self) -> float:
        return 1.0  # above the audit rate: no audit draw


def test_a_turn_is_reviewed_as_the_product_routes_it(bench: Any) -> None:
    assert bench.routed(prediction(CLARIFY, None), Never())
    assert bench.routed(prediction(HANDOFF, None), Never())
    assert bench.routed(prediction(ANSWERED, "a", disagree=True), Never())
    assert not bench.routed(prediction(ANSWERED, "a"), Never())
    audits = sum(bench.routed(prediction(ANSWERED, "a"), np.random.default_rng(s)) for s in range(2000))
    assert 20 <= audits <= 60  # the 2 % audit sample


class Scripted:
    """An engine that answers confidently every question with "sure" in it and hands the rest over."""

    def predict_batch(self, texts: list[str]) -> list[Prediction]:
        return [
            prediction(ANSWERED, "a") if "sure" in t else prediction(HANDOFF, None, top="a") for t in texts
        ]


def test_the_first_routed_questions_of_each_reviewed_topic_become_out_of_scope_rows(bench: Any) -> None:
    pool = (
        ["x sure 1", "x 1", "x 2", "x 3", "y 1", "y sure 2", "z 1"],
        ["x", "x", "x", "x", "y", "y", "z"],
    )
    chosen, arrived = bench.none_fits_rows(Scripted(), pool, ["x", "y"], 2, seed=0)
    assert len(chosen) == 3 and {c for c in chosen if c.startswith("x")} <= {"x 1", "x 2", "x 3"}
    assert "y 1" in chosen and not any("sure" in c or c.startswith("z") for c in chosen)
    assert arrived["y"] == 2  # only one of y's two questions was routed: every one arrived
    assert 2 <= arrived["x"] <= 3  # a confident answer among the first may not count


def test_groups_are_counted_apart(bench: Any) -> None:
    predictions = [
        prediction(ANSWERED, "a"),  # known, right
        prediction(CLARIFY, None, top="b"),  # known, top wrong
        prediction(HANDOFF, None, top=OUT_OF_SCOPE),  # reviewed unknown: handed over
        prediction(ANSWERED, "a"),  # reviewed unknown: answered (wrong)
        prediction(ANSWERED, "b"),  # other unknown
    ]
    figures = bench.score(predictions, ["a", "a", "r", "r", "o"], {"r", "o"}, {"r"})
    assert figures["known"] == {
        "questions": 2,
        "answered": 0.5,
        "clarify": 0.5,
        "handoff": 0.0,
        "top_intent_out_of_scope": 0.0,
        "precision": 1.0,
        "top_intent_right": 0.5,
    }
    assert figures["reviewed_unknown"] == {
        "questions": 2,
        "answered": 0.5,
        "clarify": 0.0,
        "handoff": 0.5,
        "top_intent_out_of_scope": 0.5,
    }
    assert figures["other_unknown"]["answered"] == 1.0 and figures["other_unknown"]["questions"] == 1
    assert bench.mean([{"a": 1, "b": {"c": 2.0}}, {"a": 3, "b": {"c": 4.0}}]) == {"a": 2.0, "b": {"c": 3.0}}


def test_one_seed_trains_the_reviewed_questions_as_out_of_scope(bench: Any, hashing_encoder: Any) -> None:
    texts, labels = toy_rows()
    args = argparse.Namespace(validation=False, unknown_share=0.5, reviewed_share=0.5, shots=0, per_topic=[2])
    run = bench.run_seed(0, hashing_encoder, (texts, labels), (texts, labels), args)
    assert len(run["unknown_intents"]) == 2 and len(run["reviewed_topics"]) == 1
    assert set(run["reviewed_topics"]) < set(run["unknown_intents"])
    before, after = run["by_per_topic"]["0"], run["by_per_topic"]["2"]
    assert before["none_fits_rows"] == 0 and 1 <= after["none_fits_rows"] <= 2
    assert before["reviewed_unknown"]["top_intent_out_of_scope"] == 0.0  # no such class yet
    for figures in (before, after):
        assert figures["known"]["questions"] == 12
        assert figures["reviewed_unknown"]["questions"] == figures["other_unknown"]["questions"] == 6
    # The reviewed topic's questions (some of them trained on) now read as out of scope.
    assert after["reviewed_unknown"]["top_intent_out_of_scope"] > 0
