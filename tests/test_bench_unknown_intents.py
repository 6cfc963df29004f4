"""The unknown-intents benchmark's parts on the toy engine (no encoder download, seconds): which intents are
left out, how the statuses are counted, and one seed end to end."""

from __future__ import annotations

import argparse
import math
from typing import Any

import pytest

from bot.engine import ANSWERED, CLARIFY, HANDOFF, Candidate, Prediction
from tests.bot.test_engine import toy_rows
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("unknown_intents.py")


def test_a_share_of_the_intents_is_left_out_the_same_way_for_a_seed(bench: Any) -> None:
    labels = [f"intent_{i:02d}" for i in range(77) for _ in range(2)]
    left_out = bench.unknown_intents(labels, 0.25, 0)
    assert len(left_out) == 19 and left_out <= set(labels)
    assert bench.unknown_intents(labels, 0.25, 0) == left_out
    assert bench.unknown_intents(labels, 0.25, 1) != left_out
    for share in (0.0, 1.0):
        with pytest.raises(ValueError, match="leaves"):
            bench.unknown_intents(labels, share, 0)


def prediction(
    status: str, intent: str | None, choices: tuple[str, ...] = (), disagree: bool = False
) -> Prediction:
    tops = ["a", "b"] if disagree else ["a", "a"]
    return Prediction(
        text="q",
        status=status,
        intent=intent,
        answer="",
        confidence=0.5,
        margin=0.1,
        ranking=[],
        member_scores={f"m{i}": [{"intent": top, "score": 0.5}] for i, top in enumerate(tops)},
        suggestions=[Candidate(c, 0.3, c) for c in choices],
        model_version="v",
    )


def test_statuses_are_counted_apart_for_known_and_unknown_intents(bench: Any) -> None:
    predictions = [
        prediction(ANSWERED, "a"),  # known, right
        prediction(ANSWERED, "b", disagree=True),  # known, wrong: the members disagree
        prediction(CLARIFY, None, ("a", "b")),  # known, the right intent offered
        prediction(HANDOFF, None),  # known
        prediction(ANSWERED, "a"),  # unknown: wrong by definition
        prediction(CLARIFY, None, ("a", "b")),  # unknown
    ]
    truths = ["a", "a", "a", "b", "z", "z"]
    figures = bench.score(predictions, truths, {"z"})
    assert figures["known"] == {
        "questions": 4,
        "answered": 0.5,
        "clarify": 0.25,
        "handoff": 0.25,
        "answered_members_disagree": 0.25,
        "precision": 0.5,
        "right_choice_offered": 1.0,
    }
    assert figures["unknown"] == {
        "questions": 2,
        "answered": 0.5,
        "clarify": 0.5,
        "handoff": 0.0,
        "answered_members_disagree": 0.0,
    }
    # A model that answers nothing has no precision (not 0): the mean over seeds leaves it out.
    silent = bench.score([prediction(HANDOFF, None)] * 2, ["a", "z"], {"z"})
    assert math.isnan(silent["known"]["precision"]) and silent["known"]["handoff"] == 1.0
    runs = {
        0: {"by_target_precision": {"0.99": figures}},
        1: {"by_target_precision": {"0.99": silent}},
    }
    mean = bench.mean(runs, "0.99")
    assert mean["known"]["precision"] == 0.5 and mean["known"]["handoff"] == 0.625
    assert math.isnan(bench.mean({1: runs[1]}, "0.99")["known"]["precision"])  # no seed answered
    assert bench.without_nan({"x": [math.nan, 1.0]}) == {"x": [None, 1.0]}


def test_one_seed_leaves_its_intents_out_of_training_and_scores_every_target(
    bench: Any, hashing_encoder: Any
) -> None:
    texts, labels = toy_rows()
    args = argparse.Namespace(validation=False, unknown_share=0.25, shots=0)
    run = bench.run_seed(0, hashing_encoder, (texts, labels), (texts, labels), args)
    (left_out,) = run["unknown_intents"]
    assert run["training_rows"] == sum(label != left_out for label in labels) == 18
    assert set(run["by_target_precision"]) == {"0.9", "0.95", "0.97", "0.99"}
    for figures in run["by_target_precision"].values():
        assert figures["known"]["questions"] == 18 and figures["unknown"]["questions"] == 6
        for group in ("known", "unknown"):
            shares = figures[group]
            assert shares["answered"] + shares["clarify"] + shares["handoff"] == pytest.approx(1.0)
    # The stricter the gate, the fewer questions answered.
    answered = [run["by_target_precision"][t]["known"]["answered"] for t in ("0.9", "0.95", "0.97", "0.99")]
    assert answered == sorted(answered, reverse=True)
