"""The loop benchmark's arithmetic: reviews needed to reach a target, and the per-seed summary."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def loop_sim() -> Any:
    return load_bench("loop_sim.py")


def curve(*points: tuple[int, float]) -> list[dict]:
    return [{"reviews": r, "accuracy": a, "pairs": 0} for r, a in points]


def test_reviews_to_reach_interpolates_between_rounds(loop_sim):
    rising = curve((0, 0.80), (100, 0.84), (200, 0.88))
    assert loop_sim.reviews_to_reach(rising, 0.86) == pytest.approx(150.0)
    assert loop_sim.reviews_to_reach(rising, 0.84) == pytest.approx(100.0)
    assert loop_sim.reviews_to_reach(rising, 0.79) == 0.0  # already there before any review
    assert loop_sim.reviews_to_reach(rising, 0.90) is None  # never within the run


def test_summary_gives_ratio_and_noise_cost(loop_sim):
    curves = {
        "helploop": curve((0, 0.80), (100, 0.84), (200, 0.88)),
        "random": curve((0, 0.80), (150, 0.82), (300, 0.86)),
        "oracle": curve((0, 0.80), (120, 0.85), (240, 0.885)),
    }
    summary = loop_sim.summarise(curves)
    assert summary["reviews_helploop_needs_for_random_final"] == pytest.approx(150.0)
    assert summary["reviews_random_used"] == 300
    assert summary["review_ratio"] == pytest.approx(0.5)
    assert summary["label_noise_cost_points"] == pytest.approx(0.5)
    assert summary["random_final_accuracy"] == 0.86


def test_summary_without_the_arms_that_measure_it(loop_sim):
    summary = loop_sim.summarise({"helploop": curve((0, 0.8), (100, 0.82))})
    assert "review_ratio" not in summary and "label_noise_cost_points" not in summary
    never = loop_sim.summarise(
        {"helploop": curve((0, 0.8), (100, 0.81)), "random": curve((0, 0.8), (100, 0.83))}
    )
    assert never["review_ratio"] is None


def test_simulated_member_ticks_follow_reviewer_accuracy(loop_sim):
    import numpy as np

    labels = [f"l{i}" for i in range(10)]
    crowd = loop_sim.Crowd(labels, np.random.default_rng(0), reviewers=4, spammers=1, accuracy=(0.9, 0.9))
    good, spammer = "r0", "spam0"
    ticks = [crowd.same_question(good, True) for _ in range(2000)]
    assert np.mean(ticks) == pytest.approx(0.9, abs=0.02)
    ticks = [crowd.same_question(good, False) for _ in range(2000)]
    assert np.mean(ticks) == pytest.approx(0.1, abs=0.02)
    ticks = [crowd.same_question(spammer, True) for _ in range(2000)]
    assert np.mean(ticks) == pytest.approx(0.5, abs=0.04)  # a spammer's tick is a coin toss
    assert crowd.same_question("oracle0", False) is False  # not in the crowd: the oracle is always right


def test_retrains_self_train_on_the_log_from_the_products_minimum(loop_sim, hashing_encoder) -> None:
    """As a training run: below 200 log questions an out-of-fold fit that ignores them; from 200 on a fit
    calibrated on a held-out share that self-trains on the log."""
    from tests.conftest import TOY

    texts = [t for rows in TOY.values() for t in rows]
    labels = [label for label, rows in TOY.items() for _ in rows]
    log = [f"{texts[i % len(texts)]} please {i}" for i in range(loop_sim.SELF_TRAINING_MIN_QUESTIONS)]
    short = loop_sim.fit(hashing_encoder, texts, labels, 0, log[:-1])
    assert short.manifest["training"]["calibration_source"] == "out-of-fold"
    assert "self_training" not in short.manifest["training"]
    tuned = loop_sim.fit(hashing_encoder, texts, labels, 0, log)
    assert tuned.manifest["training"]["calibration_source"] == "validation set"
    summary = tuned.manifest["training"]["self_training"]
    assert summary["traffic_rows"] == len(log) and summary["threshold"] == 0.9
    training = tuned.manifest["training"]
    assert training["rows"] + training["calibration_rows"] == len(texts)  # 15 % held out (one per intent)
    assert training["calibration_rows"] == len(TOY)
    assert (
        loop_sim.fit(hashing_encoder, texts, labels, 0, None).manifest["data_hash"]
        == short.manifest["data_hash"]
    )
