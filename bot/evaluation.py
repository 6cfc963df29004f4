"""The one evaluator contract: a callable that scores an engine on labelled rows and returns a dict of
prefixed metrics, naming its ``primary_metric``. The CLI, the benchmarks and (later) the promotion gate
all use :class:`ClassificationEvaluator`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bot.calibration import (
    coverage_at_precision,
    expected_calibration_error,
    reliability_bins,
    risk_coverage_curve,
)
from bot.engine import ANSWERED, OUT_OF_SCOPE, AnsweringEngine


def macro_f1(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> tuple[float, dict[str, Any]]:
    per_label: dict[str, Any] = {}
    truth_array, predicted_array = np.asarray(truth), np.asarray(predicted)
    scores = []
    for label in labels:
        tp = int(np.sum((predicted_array == label) & (truth_array == label)))
        fp = int(np.sum((predicted_array == label) & (truth_array != label)))
        fn = int(np.sum((predicted_array != label) & (truth_array == label)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
        if tp + fn:
            scores.append(f1)
    return float(np.mean(scores)) if scores else 0.0, per_label


class ClassificationEvaluator:
    """Evaluate an engine on (text, label) rows: accuracy, macro-F1, calibration, coverage, the gate."""

    primary_metric = "accuracy"

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        name: str = "test",
        latency_samples: int = 200,
        batch_size: int = 256,
    ) -> None:
        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        self.texts = list(texts)
        self.labels = list(labels)
        self.name = name
        self.latency_samples = latency_samples
        self.batch_size = batch_size

    def compute(self, engine: AnsweringEngine) -> dict[str, Any]:
        """Unprefixed metrics plus the curves the plots are drawn from."""
        predictions = []
        for start in range(0, len(self.texts), self.batch_size):
            predictions.extend(engine.predict_batch(self.texts[start : start + self.batch_size]))
        top = [p.top_intent for p in predictions]
        confidence = np.array([p.confidence for p in predictions])
        truth = np.array(self.labels)
        correct = np.array(top) == truth
        answered = np.array([p.status == ANSWERED for p in predictions])
        label_set = sorted(set(self.labels) | set(engine.labels))
        f1, per_label = macro_f1(
            self.labels, top, [label for label in label_set if label in set(self.labels)]
        )
        coverage_curve, precision_curve = risk_coverage_curve(confidence, correct)
        statuses = {
            s: int(sum(p.status == s for p in predictions)) for s in ("answered", "clarify", "handoff")
        }
        clarify_hits = [
            p.status == "clarify" and label in {c.intent for c in p.suggestions}
            for p, label in zip(predictions, self.labels, strict=True)
        ]
        result: dict[str, Any] = {
            "rows": len(self.texts),
            "accuracy": float(correct.mean()),
            "macro_f1": f1,
            "ece": expected_calibration_error(confidence, correct, bins=15),
            "coverage_at_precision": {
                "0.95": coverage_at_precision(confidence, correct, 0.95),
                "0.99": coverage_at_precision(confidence, correct, 0.99),
            },
            "gate": {
                "threshold": engine.gate.threshold,
                "margin": engine.gate.margin,
                "target_precision": engine.gate.target_precision,
                "coverage": float(answered.mean()),
                "precision": float(correct[answered].mean()) if answered.any() else None,
                "statuses": statuses,
                "clarify_contains_truth": (
                    float(sum(clarify_hits) / statuses["clarify"]) if statuses["clarify"] else None
                ),
            },
            "per_label": per_label,
            "curves": {
                "risk_coverage": {
                    "coverage": coverage_curve[:: max(1, len(coverage_curve) // 400)].tolist(),
                    "precision": precision_curve[:: max(1, len(precision_curve) // 400)].tolist(),
                },
                "reliability": reliability_bins(confidence, correct, bins=15),
            },
        }
        if OUT_OF_SCOPE in set(self.labels):
            in_scope = truth != OUT_OF_SCOPE
            answered_right = answered & correct
            result["in_scope_accuracy"] = float(answered_right[in_scope].mean()) if in_scope.any() else None
            out_scope = ~in_scope
            result["oos_recall"] = float((~answered[out_scope]).mean()) if out_scope.any() else None
        result["ms_per_query"] = self.latency(engine)
        return result

    def latency(self, engine: AnsweringEngine) -> float | None:
        """Median wall time of one single-message ``predict`` (warm)."""
        sample = self.texts[: self.latency_samples]
        if not sample:
            return None
        for text in sample[:5]:
            engine.predict(text)
        timings = []
        for text in sample:
            started = time.perf_counter()
            engine.predict(text)
            timings.append((time.perf_counter() - started) * 1000)
        return float(np.median(timings))

    def __call__(self, engine: AnsweringEngine) -> dict[str, float]:
        result = self.compute(engine)
        flat: dict[str, float] = {
            f"{self.name}_accuracy": result["accuracy"],
            f"{self.name}_macro_f1": result["macro_f1"],
            f"{self.name}_ece": result["ece"],
            f"{self.name}_coverage@0.95": result["coverage_at_precision"]["0.95"],
            f"{self.name}_coverage@0.99": result["coverage_at_precision"]["0.99"],
            f"{self.name}_gate_coverage": result["gate"]["coverage"],
        }
        if result["gate"]["precision"] is not None:
            flat[f"{self.name}_gate_precision"] = result["gate"]["precision"]
        return flat


def sample_shots(
    texts: Sequence[str], labels: Sequence[str], shots: int, seed: int
) -> tuple[list[str], list[str]]:
    """N rows per label (all rows of a label that has fewer), drawn reproducibly."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = by_label[label]
        take = rows if len(rows) <= shots else sorted(rng.choice(rows, size=shots, replace=False).tolist())
        chosen.extend(take)
    return [texts[i] for i in chosen], [labels[i] for i in chosen]
