"""The "did you mean" benchmark's simulation: simulated customers click as specified, and an arm runs items
through the product's review code to the end (a small synthetic set, no encoder)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pytest

from tests.conftest import clarify_prediction, load_bench

LABELS = [f"intent_{i}" for i in range(12)]


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("did_you_mean.py")


def options(**overrides: float) -> argparse.Namespace:
    return argparse.Namespace(**{"customer_accuracy": 0.85, "no_click": 0.3, "confusable": 0.5, **overrides})


def test_simulated_customers_click_as_specified(bench: Any) -> None:
    rng = np.random.default_rng(0)
    shown = LABELS[:3]
    clicks = [bench.customer_click("customers", "intent_1", shown, rng, options()) for _ in range(4000)]
    made = [c for c in clicks if c is not None]
    assert len(made) / len(clicks) == pytest.approx(0.7, abs=0.03)
    assert made.count("intent_1") / len(made) == pytest.approx(0.85, abs=0.03)
    assert set(made) == set(shown)
    # the intent was not offered: one of the choices at random
    lost = [
        bench.customer_click("customers", "intent_9", shown, rng, options(no_click=0.0)) for _ in range(900)
    ]
    assert {c: lost.count(c) / 900 for c in shown} == pytest.approx(dict.fromkeys(shown, 1 / 3), abs=0.06)
    careless = [
        bench.customer_click("careless", "intent_1", shown, rng, options(no_click=0.0)) for _ in range(900)
    ]
    assert careless.count("intent_1") / 900 == pytest.approx(1 / 3, abs=0.06)
    assert bench.customer_click("people", "intent_1", shown, rng, options(no_click=0.0)) is None


def test_an_arm_reviews_every_item_through_the_product_and_measures_the_picks(bench: Any) -> None:
    rng = np.random.default_rng(1)
    turns = []
    for i in range(40):
        truth = LABELS[i % len(LABELS)]
        others = [x for x in LABELS if x != truth]
        shown = [truth, *rng.choice(others, size=2, replace=False)]
        rng.shuffle(shown)
        prediction = clarify_prediction(
            f"question {i}", [(str(name), str(name)) for name in shown], confidence=0.6
        )
        turns.append((prediction, truth))
    args = options(customer_accuracy=1.0, no_click=0.0, confusable=0.0)
    people = bench.run_arm("people", turns, LABELS, 0, args)
    customers = bench.run_arm("customers", turns, LABELS, 0, args)
    for result in (people, customers):
        assert result["items"] == 40
        assert 2.0 <= result["judgements_per_item"] <= 5.0
        assert result["resolved_share"] + result["escalated_share"] == pytest.approx(1.0)
        assert result["resolved_accuracy"] >= 0.8
    assert people["pick_checked"] == 0 and people["pick_accuracy"] is None
    # customers who always click their own intent: right whenever the people settled on the truth (a pair of
    # spammers, or two reviewers making the same mistake among 12 labels, now and then settle on another)
    assert customers["pick_checked"] > 20 and customers["pick_accuracy"] >= 0.9
    assert customers["pick_lift"] >= 0.85
    assert customers["pick_weight"] == pytest.approx(
        customers["pick_checked"] / (customers["pick_checked"] + 20)
    )
    assert customers["judgements_per_item"] <= people["judgements_per_item"]
