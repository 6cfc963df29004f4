"""``helploop eval``: fit the default engine on a CSV and score it with the shared evaluator."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bot.engine import AnsweringEngine
from bot.evaluation import ClassificationEvaluator, sample_shots
from core.settings import Settings
from training.build import engine_config_from_settings

Rows = tuple[list[str], list[str]]


@dataclass
class EvaluationRun:
    metrics: dict[str, Any]

    def table(self) -> str:
        m = self.metrics
        gate = m["gate"]
        lines = [
            f"{'metric':<34}{'value':>12}",
            "-" * 46,
            f"{'train rows / intents':<34}{m['train_rows']:>7} / {m['intents']:<3}",
            f"{'test rows':<34}{m['rows']:>12}",
            f"{'encoder':<34}{m.get('encoder', '?'):>12}",
            f"{'accuracy':<34}{m['accuracy'] * 100:>11.2f}%",
            f"{'macro F1':<34}{m['macro_f1'] * 100:>11.2f}%",
            f"{'ECE (15 bins)':<34}{m['ece']:>12.4f}",
            f"{'coverage at 95% precision':<34}{m['coverage_at_precision']['0.95'] * 100:>11.2f}%",
            f"{'coverage at 99% precision':<34}{m['coverage_at_precision']['0.99'] * 100:>11.2f}%",
            f"{'gate target precision':<34}{gate['target_precision'] * 100:>11.2f}%",
            f"{'gate coverage (answered)':<34}{gate['coverage'] * 100:>11.2f}%",
            f"{'gate precision on answered':<34}"
            + (f"{gate['precision'] * 100:>11.2f}%" if gate["precision"] is not None else f"{'n/a':>12}"),
            f"{'answered / clarify / handoff':<34}{gate['statuses']['answered']:>5} /"
            f"{gate['statuses']['clarify']:>5} /{gate['statuses']['handoff']:>5}",
        ]
        if "in_scope_accuracy" in m:
            lines.append(f"{'in-scope accuracy':<34}{m['in_scope_accuracy'] * 100:>11.2f}%")
            lines.append(f"{'oos recall':<34}{m['oos_recall'] * 100:>11.2f}%")
        lines += [
            f"{'fit time':<34}{m['train_seconds']:>11.1f}s",
            f"{'latency per query (median)':<34}"
            + (f"{m['ms_per_query']:>10.2f}ms" if m["ms_per_query"] is not None else f"{'n/a':>12}"),
            f"{'combiner weights':<34} "
            + ", ".join(f"{k}={v:.2f}" for k, v in m["combiner_weights"].items()),
        ]
        return "\n".join(lines)


def run_evaluation(
    settings: Settings,
    *,
    train: Rows,
    test: Rows,
    val: Rows | None = None,
    shots: int | None = None,
    seed: int = 0,
    target_precision: float | None = None,
    runtime: str = "torch",
    save_model: str | None = None,
) -> EvaluationRun:
    texts, labels = train
    if shots:
        texts, labels = sample_shots(texts, labels, shots, seed)
    config = engine_config_from_settings(settings)
    config.seed = seed
    if target_precision is not None:
        config.target_precision = target_precision
    # As configured: saving copies an encoder given as a folder into the bundle and points the config there.
    sources = [str(e.get("source")) for e in config.encoder_configs()]
    with tempfile.TemporaryDirectory(prefix="helploop-eval-") as work:
        engine = AnsweringEngine(config, threads=settings.torch_threads)
        if runtime == "onnx":
            # Fit on the exported encoder, as `helploop build` does: the members, the combiner and the gate
            # see what the bundle serves (int8 moves the embeddings enough to cost calibration).
            engine.fit_on_onnx(work, quantize=settings.onnx_quantize)
        started = time.perf_counter()
        engine.fit(
            texts,
            labels,
            calibration_texts=val[0] if val else None,
            calibration_labels=val[1] if val else None,
            progress=True,
        )
        train_seconds = time.perf_counter() - started
        if save_model:
            engine.save(save_model)
        from bot.runtime import configure_inference_threads

        configure_inference_threads(settings.torch_threads)
        result = ClassificationEvaluator(*test).compute(engine)
    result.update(
        {
            "train_rows": len(texts),
            "intents": len(engine.labels),
            "shots": shots,
            "seed": seed,
            "runtime": engine.runtime,
            "encoder": sources[0],
            "extra_encoders": sources[1:],
            "train_seconds": train_seconds,
            "model_version": engine.version,
            "combiner_weights": dict(
                zip(engine.combiner.members, map(float, engine.combiner.weights), strict=True)
            )
            if engine.combiner
            else {},
            "calibration_metrics": engine.manifest.get("calibration_metrics", {}),
        }
    )
    return EvaluationRun(result)
