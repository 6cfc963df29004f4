"""The promotion gate: a candidate is compared with production on the same frozen evaluation set.

The evaluation set is a deterministic slice of the knowledge base examples (hash of intent and text), so
it stays the same for unchanged examples across knowledge-base versions and is never trained on. The report
has a paired bootstrap confidence interval of the accuracy difference, McNemar's exact test, per-intent
accuracy, the confusion pairs that changed, coverage at precision and calibration for both models.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest

from bot.calibration import (
    coverage_at_precision,
    expected_calibration_error,
    reliability_bins,
    risk_coverage_curve,
)
from bot.engine import AnsweringEngine

HOLDOUT_PERCENT = 10
MIN_EXAMPLES_FOR_HOLDOUT = 10
WORSE, BETTER, NO_DIFFERENCE, NO_BASELINE = "worse", "better", "no_significant_difference", "no_baseline"


def in_evaluation_set(intent: str, text: str) -> bool:
    digest = hashlib.sha256(f"{intent}\n{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HOLDOUT_PERCENT


def split_for_evaluation(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """(train indices, evaluation indices). Intents with few examples keep them all for training."""
    counts = Counter(labels)
    train, held = [], []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if counts[label] >= MIN_EXAMPLES_FOR_HOLDOUT and in_evaluation_set(label, text):
            held.append(i)
        else:
            train.append(i)
    return train, held


def _scores(engine: AnsweringEngine, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    predictions = [
        p for start in range(0, len(texts), 256) for p in engine.predict_batch(texts[start : start + 256])
    ]
    return np.array([p.top_intent for p in predictions]), np.array([p.confidence for p in predictions])


NO_EVALUATION_NOTE = (
    f"no frozen evaluation rows: an intent's examples are held out to evaluate on only once it has "
    f"{MIN_EXAMPLES_FOR_HOLDOUT} or more (a knowledge base of a few examples an intent, such as an FAQ page, "
    "trains on every one), so the gate has nothing to compare models on"
)


def _summary(predicted: np.ndarray, confidence: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    if not len(truth):  # nothing held out: no figure (NaN is no JSON, and PostgreSQL refuses it)
        return {
            "curves": {"reliability": [], "risk_coverage": []},
            "accuracy": None,
            "ece": None,
            "coverage_at_precision": {"0.95": None, "0.99": None},
        }
    correct = predicted == truth
    coverage, precision = risk_coverage_curve(confidence, correct)
    step = max(1, len(coverage) // 50)
    return {
        "curves": {
            "reliability": reliability_bins(confidence, correct),
            "risk_coverage": [
                [float(c), float(p)] for c, p in zip(coverage[::step], precision[::step], strict=True)
            ],
        },
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(confidence, correct),
        "coverage_at_precision": {
            "0.95": coverage_at_precision(confidence, correct, 0.95),
            "0.99": coverage_at_precision(confidence, correct, 0.99),
        },
    }


def mcnemar_p(production_right: np.ndarray, candidate_right: np.ndarray) -> tuple[int, int, float]:
    only_production = int(np.sum(production_right & ~candidate_right))
    only_candidate = int(np.sum(~production_right & candidate_right))
    discordant = only_production + only_candidate
    p = 1.0 if discordant == 0 else float(binomtest(only_candidate, discordant, 0.5).pvalue)
    return only_production, only_candidate, p


def paired_bootstrap(
    production_right: np.ndarray, candidate_right: np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean accuracy difference (candidate - production) and its 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    difference = candidate_right.astype(float) - production_right.astype(float)
    n = len(difference)
    samples = difference[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    return float(difference.mean()), float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def compare(
    candidate: AnsweringEngine,
    production: AnsweringEngine | None,
    texts: Sequence[str],
    labels: Sequence[str],
) -> dict[str, Any]:
    truth = np.array(labels)
    candidate_top, candidate_confidence = _scores(candidate, texts)
    report: dict[str, Any] = {
        "rows": len(texts),
        "candidate": {"version": candidate.version, **_summary(candidate_top, candidate_confidence, truth)},
    }
    if not len(texts):
        report["decision"], report["note"] = NO_BASELINE, NO_EVALUATION_NOTE
        return report
    if production is None:
        report["decision"] = NO_BASELINE
        return report
    production_top, production_confidence = _scores(production, texts)
    report["production"] = {
        "version": production.version,
        **_summary(production_top, production_confidence, truth),
    }
    candidate_right, production_right = candidate_top == truth, production_top == truth
    mean, low, high = paired_bootstrap(production_right, candidate_right)
    only_production, only_candidate, p_value = mcnemar_p(production_right, candidate_right)
    report["difference"] = {"accuracy": mean, "ci95": [low, high]}
    report["mcnemar"] = {
        "only_production_right": only_production,
        "only_candidate_right": only_candidate,
        "p_value": p_value,
    }
    per_intent = {}
    for intent in sorted(set(labels)):
        mask = truth == intent
        per_intent[intent] = {
            "rows": int(mask.sum()),
            "production": float(production_right[mask].mean()),
            "candidate": float(candidate_right[mask].mean()),
        }
    report["per_intent"] = per_intent
    before = Counter(zip(truth[~production_right], production_top[~production_right], strict=True))
    after = Counter(zip(truth[~candidate_right], candidate_top[~candidate_right], strict=True))
    changes = sorted(
        (
            (t, p, after[(t, p)] - before[(t, p)])
            for t, p in set(before) | set(after)
            if after[(t, p)] != before[(t, p)]
        ),
        key=lambda x: -abs(x[2]),
    )
    report["confusion_changes"] = [{"true": t, "predicted": p, "change": c} for t, p, c in changes[:20]]
    if high < 0 and p_value < 0.05:
        report["decision"] = WORSE
    elif low > 0 and p_value < 0.05:
        report["decision"] = BETTER
    else:
        report["decision"] = NO_DIFFERENCE
    return report
