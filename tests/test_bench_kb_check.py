"""The knowledge-base check benchmark, on the committed 12-intent BANKING77 fixture: the injected label noise
is what it says, the check finds it, and the figures it reports add up."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("kb_check.py", "kb_check_bench")


def test_confusable_noise_is_found_and_the_figures_add_up(
    bench: Any, minilm_encoder: Any, small_banking: dict[str, Any]
) -> None:
    from bot.encoders import CachingEncoder

    encoder = CachingEncoder(minilm_encoder)
    train, test = small_banking["train"], small_banking["test"]
    clean = bench.fit(encoder, *train, 0)
    confusable = bench.runner_up(clean, train[1])
    assert all(other != label for other, label in zip(confusable, train[1], strict=True))
    result = bench.run_way("confusable", 0, encoder, train, test, confusable, 0.05)
    assert result["moved"] == round(0.05 * len(train[0])) == 9
    found = round(result["recall"] * result["moved"])
    assert result["flagged"] == found + result["flagged_unmoved"]
    assert result["recall"] >= 0.6 and result["precision"] >= 0.6  # measured: 6 of 9 found, 6 of 9 flagged
    assert (
        result["suggested_right"] == 1.0
    )  # moved to the runner-up, so the runner-up's runner-up is the truth
    # Reading as many rows at random finds 0.45 of the moved ones on average: the check finds 6.
    assert result["random_review_finds"] == pytest.approx(result["flagged"] * 9 / len(train[0]))
    assert found >= 10 * result["random_review_finds"]
    assert result["labels_wrong_after_review"] == result["moved"] - found
    # Reviewing the flagged rows never leaves the knowledge base worse than the noise did.
    assert result["accuracy_reviewed"] >= result["accuracy_noisy"]
