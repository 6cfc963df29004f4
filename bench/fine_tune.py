"""Few-shot BANKING77 with the encoder fine-tuned (training/finetune.py) against the frozen-encoder engine.

Per seed: draw N examples per intent, fine-tune the bi-encoder contrastively on 85 % of them, calibrate on the
other 15 %, refit the members on all, score on the test split. CPU here; uses CUDA when present.

    .venv/bin/python bench/fine_tune.py [--shots 10] [--seeds 0 1 2] [--epochs 6] [--head-epochs 0]
    .venv/bin/python bench/fine_tune.py --shots 0 --seeds 0 --epochs 1   # the full training set

Writes bench/results/fine_tune.json (few-shot) or fine_tune_full.json (--shots 0); with --encoder NAME,
fine_tune_NAME.json, compared with accuracy_NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.encoders import DEFAULT_ENCODER  # noqa: E402
from bot.engine import EngineConfig  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from training.finetune import FineTuneConfig, device, fit_engine_with_fine_tuning  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=6.0)
    parser.add_argument("--head-epochs", type=float, default=0.0, help="classification stage (0: off)")
    parser.add_argument(
        "--encoder", default=None, help="encoder package or directory (default: the engine's own)"
    )
    args = parser.parse_args()
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    frozen = {}
    # Figures of another encoder go to files named after it (as bench/accuracy.py --encoder does).
    suffix = "" if args.encoder in (None, DEFAULT_ENCODER) else "_" + Path(args.encoder).name
    accuracy_json = args.out / f"accuracy{suffix}.json"
    if accuracy_json.is_file():
        reference = json.loads(accuracy_json.read_text())
        if args.shots:
            per_seed = reference["shots"]["per_seed"]
            frozen = {int(seed): run["engine"]["accuracy"] for seed, run in per_seed.items()}
        else:
            frozen = {seed: reference["full"]["engine"]["accuracy"] for seed in args.seeds}
    encoder = args.encoder or EngineConfig().encoder["source"]
    rows = {}
    for seed in args.seeds:
        few = sample_shots(*train, shots=args.shots, seed=seed) if args.shots else train
        started = time.perf_counter()
        engine = fit_engine_with_fine_tuning(
            *few,
            config=EngineConfig(seed=seed, encoder={**EngineConfig().encoder, "source": encoder}),
            tuning=FineTuneConfig(epochs=args.epochs, head_epochs=args.head_epochs, seed=seed),
            work_dir=tempfile.mkdtemp(prefix="helploop-ft-"),
            progress=False,
        )
        seconds = time.perf_counter() - started
        result = ClassificationEvaluator(*test, latency_samples=0).compute(engine)
        rows[seed] = {
            "accuracy": result["accuracy"],
            "ece": result["ece"],
            "coverage_at_0.99": result["coverage_at_precision"]["0.99"],
            "fit_seconds": seconds,
        }
        print(
            f"seed {seed}: fine-tuned {result['accuracy']:.4f} "
            f"(frozen {frozen.get(seed, float('nan')):.4f}), "
            f"ECE {result['ece']:.4f}, fit {seconds:.0f}s on {device()}",
            flush=True,
        )
    mean = float(np.mean([r["accuracy"] for r in rows.values()]))
    frozen_mean = (
        float(np.mean([frozen[s] for s in args.seeds])) if all(s in frozen for s in args.seeds) else None
    )
    regime = f"{args.shots}-shot" if args.shots else "full training set"
    target = 0.898 if args.shots else 0.940
    print(
        f"{regime} mean: fine-tuned {mean:.4f}"
        + (f", frozen {frozen_mean:.4f}" if frozen_mean else "")
        + f" (target {target:.3f} for the fine-tuned recipe)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / (f"fine_tune{suffix}.json" if args.shots else f"fine_tune_full{suffix}.json")).write_text(
        json.dumps(
            {
                "shots": args.shots,
                "epochs": args.epochs,
                "head_epochs": args.head_epochs,
                "device": device(),
                "per_seed": rows,
                "mean": mean,
                "frozen_mean": frozen_mean,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
