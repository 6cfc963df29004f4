"""Self-training on unlabelled traffic, frozen encoder: BANKING77 few-shot, the same engine with and without.

Per seed: draw N labelled examples per intent (the knowledge base); the training split's other rows, without
their labels, are the bot's traffic. Three engines, scored on the test split:
- ``out_of_fold``: the frozen-encoder engine as it trains without traffic (combiner and gate fitted out of
  fold on every labelled row);
- ``held_out``: the same, calibrated on a stratified 15 % of the labelled rows instead (what self-training
  needs: labelled rows no pseudo-label came from), no traffic;
- ``self_trained``: ``held_out`` plus the traffic (AnsweringEngine.fit(traffic_texts=...)), as a training
  run with HELPLOOP_SELF_TRAINING does.
Each engine's cost past the encoder is recorded too (``members_ms``: median time of one ``predict`` with the
encodings cached, so members, combiner and gate only; ``members_mb``: its members saved to disk): a
self-trained nearest-neighbour member holds the pseudo-labelled questions as well.
Nothing is tuned on the test split: the threshold, 0.7, was chosen among 0.6 / 0.7 / 0.8 / 0.9 on 3,000 rows
held out of train (MiniLM, seeds 0-2, frozen and fine-tuned).

    .venv/bin/python bench/self_training.py [--shots 10] [--seeds 0 1 2] [--encoder NAME] [--threshold 0.7]

Prints a table and writes bench/results/self_training[_ENCODER].json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.encoders import DEFAULT_ENCODER, CachingEncoder  # noqa: E402
from bot.engine import AnsweringEngine, EngineConfig  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from training.finetune import calibration_split  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
LATENCY_MESSAGES = 200
VARIANTS = ("out_of_fold", "held_out", "self_trained")


def members_megabytes(engine: AnsweringEngine) -> float:
    """What the engine's members take on disk (the encoder, the same for every variant, left out)."""
    with tempfile.TemporaryDirectory() as folder:
        for name, member in engine.members.items():
            member.save(Path(folder) / name)
        return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 1e6


def run_seed(
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    *,
    shots: int,
    seed: int,
    encoder: str,
    threshold: float,
    encoders: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    texts, labels = sample_shots(*train, shots=shots, seed=seed)
    labelled = set(zip(texts, labels, strict=True))
    traffic = [t for t, label in zip(*train, strict=True) if (t, label) not in labelled]
    config = EngineConfig(
        seed=seed,
        encoder={**EngineConfig().encoder, "source": encoder},
        self_training_threshold=threshold,
    )
    kept, held = calibration_split(labels, 0.15, seed)
    row: dict[str, Any] = {}
    for variant in VARIANTS:
        engine = AnsweringEngine(config, encoders=encoders)
        if encoders is None:  # one encoder, each text encoded once, shared by the three engines
            encoders = {e.name: CachingEncoder(e) for e in engine.all_encoders()}
            engine.encoders = encoders
        started = time.perf_counter()
        if variant == "out_of_fold":
            engine.fit(texts, labels)
        else:
            engine.fit(
                [texts[i] for i in kept],
                [labels[i] for i in kept],
                calibration_texts=[texts[i] for i in held],
                calibration_labels=[labels[i] for i in held],
                refit_texts=texts,
                refit_labels=labels,
                traffic_texts=traffic if variant == "self_trained" else None,
            )
        seconds = time.perf_counter() - started
        result = ClassificationEvaluator(*test, latency_samples=0).compute(engine)
        # The test texts are encoded (and cached) by now: this times what comes after the encoder.
        members_ms = ClassificationEvaluator(*test, latency_samples=LATENCY_MESSAGES).latency(engine)
        row[variant] = {
            "accuracy": result["accuracy"],
            "ece": result["ece"],
            "coverage_at_0.95": result["coverage_at_precision"]["0.95"],
            "coverage_at_0.99": result["coverage_at_precision"]["0.99"],
            "fit_seconds": round(seconds, 1),
            "members_ms": members_ms,
            "members_mb": round(members_megabytes(engine), 2),
        }
        if variant == "self_trained":
            row[variant]["self_training"] = engine.manifest["training"]["self_training"]
        print(
            f"seed {seed} {variant:<13} accuracy {result['accuracy']:.4f}  ECE {result['ece']:.4f}  "
            f"coverage@0.99 {result['coverage_at_precision']['0.99']:.4f}  fit {seconds:.0f}s  "
            f"members {members_ms:.2f} ms, {row[variant]['members_mb']:.1f} MB",
            flush=True,
        )
    assert encoders is not None
    return row, encoders


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--threshold", type=float, default=EngineConfig().self_training_threshold)
    args = parser.parse_args()
    if args.shots < 2:
        parser.error("--shots must be 2 or more: the calibration split holds out labelled rows")
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    rows: dict[int, dict[str, Any]] = {}
    encoders = None
    for seed in args.seeds:
        rows[seed], encoders = run_seed(
            train,
            test,
            shots=args.shots,
            seed=seed,
            encoder=args.encoder,
            threshold=args.threshold,
            encoders=encoders,
        )
    means = {
        variant: {
            key: float(np.mean([rows[s][variant][key] for s in args.seeds]))
            for key in ("accuracy", "ece", "coverage_at_0.95", "coverage_at_0.99", "members_ms", "members_mb")
        }
        for variant in VARIANTS
    }
    print(
        f"\nBANKING77 test, {args.shots}-shot, seeds {args.seeds}, {args.encoder}, threshold {args.threshold}"
    )
    print(
        f"{'engine':<14}{'accuracy':>10}{'ECE':>8}{'cov@0.95':>10}{'cov@0.99':>10}"
        f"{'members ms':>12}{'members MB':>12}"
    )
    for variant, mean in means.items():
        print(
            f"{variant:<14}{mean['accuracy']:>10.4f}{mean['ece']:>8.4f}"
            f"{mean['coverage_at_0.95']:>10.4f}{mean['coverage_at_0.99']:>10.4f}"
            f"{mean['members_ms']:>12.2f}{mean['members_mb']:>12.1f}"
        )
    suffix = "" if args.encoder == DEFAULT_ENCODER else "_" + Path(args.encoder).name
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"self_training{suffix}.json"
    path.write_text(
        json.dumps(
            {
                "shots": args.shots,
                "seeds": args.seeds,
                "encoder": args.encoder,
                "threshold": args.threshold,
                "per_seed": rows,
                "mean": means,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
