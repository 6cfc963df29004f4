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


def test_with_no_evaluation_rows_the_report_says_so_in_json_without_nan() -> None:
    """A knowledge base of a few examples an intent (an FAQ page: one) holds nothing out to evaluate on: the
    report has no figures (None, not NaN, which is no JSON and which PostgreSQL refuses) and says why."""
    import json
    from types import SimpleNamespace

    from training.gate import NO_BASELINE, compare

    candidate = SimpleNamespace(version="v2")  # nothing is predicted with no rows
    production = SimpleNamespace(version="v1")
    for baseline in (None, production):
        report = compare(candidate, baseline, [], [])  # type: ignore[arg-type]
        assert report["rows"] == 0 and report["decision"] == NO_BASELINE and "production" not in report
        assert report["candidate"]["accuracy"] is None and report["candidate"]["ece"] is None
        assert report["candidate"]["coverage_at_precision"] == {"0.95": None, "0.99": None}
        assert report["note"].startswith("no frozen evaluation rows: an intent's examples are held out")
        json.dumps(report, allow_nan=False)  # raises on NaN


def test_a_split_where_no_intent_has_enough_examples_holds_nothing_out() -> None:
    texts = [f"question {i}" for i in range(MIN_EXAMPLES_FOR_HOLDOUT - 1)] * 3
    labels = [f"faq_{i % 3}" for i in range(len(texts))]
    train, held = split_for_evaluation(texts, labels)
    assert held == [] and train == list(range(len(texts)))
