import numpy as np
import pytest

from training.gate import (
    HOLDOUT_PERCENT,
    MIN_EXAMPLES_FOR_HOLDOUT,
    in_evaluation_set,
    mcnemar_p,
    paired_bootstrap,
    split_for_evaluation,
)


def test_evaluation_split_is_deterministic_and_spares_small_intents() -> None:
    texts = [f"question number {i}" for i in range(400)] + ["rare one", "rare two"]
    labels = ["big"] * 400 + ["rare"] * 2
    train, held = split_for_evaluation(texts, labels)
    assert split_for_evaluation(texts, labels) == (train, held)
    assert sorted(train + held) == list(range(402))
    assert all(labels[i] == "big" for i in held)  # fewer than MIN_EXAMPLES_FOR_HOLDOUT: all kept for training
    assert MIN_EXAMPLES_FOR_HOLDOUT > 2
    assert abs(len(held) / 400 - HOLDOUT_PERCENT / 100) < 0.05
    # Adding examples never moves an existing one in or out of the evaluation set.
    more_train, more_held = split_for_evaluation(texts + ["new text"], labels + ["big"])
    assert set(held) <= set(more_held)
    assert in_evaluation_set("big", texts[held[0]])


def test_mcnemar_and_paired_bootstrap() -> None:
    production = np.array([True] * 80 + [False] * 20)
    candidate = production.copy()
    candidate[80:95] = True  # candidate fixes 15 errors
    candidate[:2] = False  # and breaks 2
    only_production, only_candidate, p_value = mcnemar_p(production, candidate)
    assert (only_production, only_candidate) == (2, 15)
    assert p_value == pytest.approx(2 * (1 + 17 + 136) / 2**17)  # exact two-sided binomial, 2 of 17
    mean, low, high = paired_bootstrap(production, candidate)
    assert mean == pytest.approx(0.13) and 0 < low < mean < high
    same_mean, same_low, same_high = paired_bootstrap(production, production)
    assert (same_mean, same_low, same_high) == (0.0, 0.0, 0.0)
    assert mcnemar_p(production, production)[2] == 1.0
