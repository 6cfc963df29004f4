"""Self-training on unlabelled traffic: BANKING77 few-shot, the same engine with and without.

Per seed: draw N labelled examples per intent (the knowledge base); the training split's other rows, without
their labels, are the bot's traffic. Engines, scored on the test split:
- ``out_of_fold``: the frozen-encoder engine as it trains without traffic (combiner and gate fitted out of
  fold on every labelled row);
- ``held_out``: the same, calibrated on a stratified 15 % of the labelled rows instead (what self-training
  needs: labelled rows no pseudo-label came from), no traffic;
- ``self_trained_T``: ``held_out`` plus the traffic (AnsweringEngine.fit(traffic_texts=...)) at threshold T,
  as a training run with HELPLOOP_SELF_TRAINING does.
Each engine's cost past the encoder is recorded too (``members_ms``: median time of one ``predict`` with the
encodings cached, so members, combiner and gate only; ``members_mb``: its members saved to disk): a
self-trained nearest-neighbour member holds the pseudo-labelled questions as well.

``--validate`` is how the threshold was chosen, never on test: per seed, 3,000 rows of train are held out as
the evaluation set, and the shots and the traffic come from the rest. ``--fine-tune`` first fine-tunes the
encoder on the labelled rows outside the calibration split (as a fine-tuning run does; no out-of-fold engine
then). The default, 0.9, came from

    .venv/bin/python bench/self_training.py --validate --thresholds 0.7 0.8 0.9 [--fine-tune]

    .venv/bin/python bench/self_training.py [--shots 10] [--seeds 0 1 2] [--encoder NAME] [--thresholds 0.9]

Prints a table and writes bench/results/self_training[_validate][_fine_tuned][_ENCODER].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from bot.engine import ANSWERED, CLARIFY, AnsweringEngine, EngineConfig, Prediction  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from training.finetune import (  # noqa: E402
    FineTuneConfig,
    calibration_split,
    fine_tune_encoder,
    fit_calibrated_on_held_out,
)

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
LATENCY_MESSAGES = 200
VALIDATION_ROWS = 3000


def members_megabytes(engine: AnsweringEngine) -> float:
    """What the engine's members take on disk (the encoder, the same for every variant, left out)."""
    with tempfile.TemporaryDirectory() as folder:
        for name, member in engine.members.items():
            member.save(Path(folder) / name)
        return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 1e6


def run_seed(
    pool: tuple[list[str], list[str]],
    evaluation: tuple[list[str], list[str]],
    *,
    shots: int,
    seed: int,
    encoder: str,
    thresholds: list[float],
    fine_tune: bool,
    encoders: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One seed's engines (and the encoding cache, which the next seed may reuse: None after fine-tuning)."""
    texts, labels = sample_shots(*pool, shots=shots, seed=seed)
    labelled = set(zip(texts, labels, strict=True))
    traffic = [t for t, label in zip(*pool, strict=True) if (t, label) not in labelled]
    kept, held = calibration_split(labels, 0.15, seed)
    source = encoder
    work = None
    if fine_tune:  # as fit_engine_with_fine_tuning: the encoder learns from the rows outside the split
        work = Path(tempfile.mkdtemp(prefix="helploop-st-"))  # the tuned encoder, removed after this seed
        tuning = FineTuneConfig(seed=seed)
        source = str(
            fine_tune_encoder(
                encoder,
                [texts[i] for i in kept],
                [labels[i] for i in kept],
                work,
                tuning,
                progress=False,
            )
        )
    variants: list[tuple[str, float | None]] = [] if fine_tune else [("out_of_fold", None)]
    variants += [("held_out", None)] + [(f"self_trained_{t:g}", t) for t in thresholds]
    row: dict[str, Any] = {}
    for variant, threshold in variants:
        config = EngineConfig(
            seed=seed,
            encoder={**EngineConfig().encoder, "source": source},
            self_training_threshold=threshold,
        )
        engine = AnsweringEngine(config, encoders=encoders)
        if encoders is None:  # one encoder, each text encoded once, shared by the engines
            encoders = {e.name: CachingEncoder(e) for e in engine.all_encoders()}
            engine.encoders = encoders
        started = time.perf_counter()
        if variant == "out_of_fold":
            engine.fit(texts, labels)
        else:
            fit_calibrated_on_held_out(
                engine,
                texts,
                labels,
                (kept, held),
                traffic_texts=traffic if threshold is not None else None,
            )
        seconds = time.perf_counter() - started
        result = ClassificationEvaluator(*evaluation, latency_samples=0).compute(engine)
        # The evaluation texts are encoded (and cached) by now: this times what comes after the encoder.
        members_ms = ClassificationEvaluator(*evaluation, latency_samples=LATENCY_MESSAGES).latency(engine)
        row[variant] = {
            "accuracy": result["accuracy"],
            "ece": result["ece"],
            "coverage_at_0.95": result["coverage_at_precision"]["0.95"],
            "coverage_at_0.99": result["coverage_at_precision"]["0.99"],
            "fit_seconds": round(seconds, 1),
            "members_ms": members_ms,
            "members_mb": round(members_megabytes(engine), 2),
        }
        if threshold is not None:
            row[variant]["self_training"] = engine.manifest["training"]["self_training"]
        print(
            f"seed {seed} {variant:<18} accuracy {result['accuracy']:.4f}  ECE {result['ece']:.4f}  "
            f"coverage@0.95 {result['coverage_at_precision']['0.95']:.4f}  "
            f"coverage@0.99 {result['coverage_at_precision']['0.99']:.4f}  fit {seconds:.0f}s  "
            f"members {members_ms:.2f} ms, {row[variant]['members_mb']:.1f} MB",
            flush=True,
        )
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    return row, None if fine_tune else encoders


def seeded_arguments(description: str | None) -> argparse.ArgumentParser:
    """The arguments every few-shot bench on BANKING77 takes: --data, --out, --shots, --seeds, --encoder."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    return parser


def result_path(args: argparse.Namespace, stem: str) -> Path:
    """Where a seeded bench writes its JSON: ``stem[_N-shot][_validation][_ENCODER].json`` under --out
    (``shots`` 0 is all rows; ``validation`` when the bench has that option), the folder made."""
    name = (
        stem
        + (f"_{args.shots}-shot" if args.shots else "")
        + ("_validation" if getattr(args, "validation", False) else "")
        + ("" if args.encoder == DEFAULT_ENCODER else "_" + Path(args.encoder).name)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out / f"{name}.json"


def validation_figures(result: dict[str, Any]) -> dict[str, float]:
    """What the validation benches (interpolation, recipe_validate) report of a ClassificationEvaluator
    result."""
    return {
        "accuracy": result["accuracy"],
        "ece": result["ece"],
        "coverage_at_0.99": result["coverage_at_precision"]["0.99"],
    }


def figures_line(figures: dict[str, float]) -> str:
    return (
        f"accuracy {figures['accuracy']:.4f}  ECE {figures['ece']:.4f}  "
        f"coverage@0.99 {figures['coverage_at_0.99']:.4f}"
    )


def seed_means(rows: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per variant, the mean over seeds of each figure (rows: seed -> variant -> figures)."""
    first = next(iter(rows.values()))
    return {v: {k: float(np.mean([rows[s][v][k] for s in rows])) for k in first[v]} for v in first}


def validation_split(
    train: tuple[list[str], list[str]], seed: int
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """(pool, evaluation): VALIDATION_ROWS rows of train held out, drawn per seed."""
    order = np.random.default_rng(100 + seed).permutation(len(train[0]))

    def pick(rows: np.ndarray) -> tuple[list[str], list[str]]:
        return [train[0][i] for i in rows], [train[1][i] for i in rows]

    return pick(order[VALIDATION_ROWS:]), pick(order[:VALIDATION_ROWS])


def split_arguments(description: str | None) -> argparse.ArgumentParser:
    """The arguments of a bench scored on the BANKING77 test split or, with --validation, on the rows
    ``validation_split`` holds out of train: --data, --out, --seed, --validation, --encoder."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation", action="store_true", help="score 3,000 rows held out of train")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    return parser


def fitted_for_split(args: argparse.Namespace) -> tuple[AnsweringEngine, tuple[list[str], list[str]]]:
    """The engine fitted as `helploop build` fits it (frozen --encoder, cached, the product's gate) on train,
    or on train less the held-out rows with --validation; and the rows it is scored on."""
    from bot.encoders import SentenceTransformerEncoder

    train = read_labelled_csv(args.data / "train.csv")
    evaluation = read_labelled_csv(args.data / "test.csv")
    if args.validation:
        train, evaluation = validation_split(train, args.seed)
    encoder = CachingEncoder(SentenceTransformerEncoder(args.encoder, threads=2))
    engine = AnsweringEngine(EngineConfig(seed=args.seed), encoders={"minilm": encoder}, threads=2)
    engine.fit(*train, progress=False)
    return engine, evaluation


def reply_figures(predictions: list[Prediction], labels: list[str]) -> dict[str, int]:
    """How a split bench's messages were replied to: answered right or wrong, asked "did you mean", and
    the right intent one click away (answered, or among the choices)."""
    figures = {"messages": len(labels), "answered_right": 0, "answered_wrong": 0, "asked": 0, "reachable": 0}
    for p, y in zip(predictions, labels, strict=True):
        figures["answered_right"] += p.status == ANSWERED and p.intent == y
        figures["answered_wrong"] += p.status == ANSWERED and p.intent != y
        figures["asked"] += p.status == CLARIFY
        choices = {c.intent for c in p.suggestions} if p.status == CLARIFY else set()
        figures["reachable"] += (p.status == ANSWERED and p.intent == y) or y in choices
    return figures


def split_name(args: argparse.Namespace) -> str:
    """What a split bench's results say they were scored on."""
    return "3,000 rows held out of train" if args.validation else "BANKING77 test split"


def main() -> None:
    parser = seeded_arguments(__doc__)
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[EngineConfig().self_training_threshold]
    )
    parser.add_argument("--validate", action="store_true", help="score on 3,000 rows held out of train")
    parser.add_argument("--fine-tune", action="store_true", help="fine-tune the encoder first (slow on CPU)")
    args = parser.parse_args()
    if args.shots < 2:
        parser.error("--shots must be 2 or more: the calibration split holds out labelled rows")
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    rows: dict[int, dict[str, Any]] = {}
    encoders = None
    for seed in args.seeds:
        pool, evaluation = validation_split(train, seed) if args.validate else (train, test)
        rows[seed], encoders = run_seed(
            pool,
            evaluation,
            shots=args.shots,
            seed=seed,
            encoder=args.encoder,
            thresholds=args.thresholds,
            fine_tune=args.fine_tune,
            encoders=encoders,
        )
    keys = ("accuracy", "ece", "coverage_at_0.95", "coverage_at_0.99", "members_ms", "members_mb")
    means = {
        variant: {key: float(np.mean([rows[s][variant][key] for s in args.seeds])) for key in keys}
        for variant in rows[args.seeds[0]]
    }
    scored_on = "3,000 rows held out of train" if args.validate else "test"
    tuned = ", encoder fine-tuned" if args.fine_tune else ""
    print(
        f"\nBANKING77 {scored_on}, {args.shots}-shot, seeds {args.seeds}, {args.encoder}{tuned}, "
        f"thresholds {args.thresholds}"
    )
    print(
        f"{'engine':<20}{'accuracy':>10}{'ECE':>8}{'cov@0.95':>10}{'cov@0.99':>10}"
        f"{'members ms':>12}{'members MB':>12}"
    )
    for variant, mean in means.items():
        print(
            f"{variant:<20}{mean['accuracy']:>10.4f}{mean['ece']:>8.4f}"
            f"{mean['coverage_at_0.95']:>10.4f}{mean['coverage_at_0.99']:>10.4f}"
            f"{mean['members_ms']:>12.2f}{mean['members_mb']:>12.1f}"
        )
    suffix = ("_validate" if args.validate else "") + ("_fine_tuned" if args.fine_tune else "")
    if args.encoder != DEFAULT_ENCODER:
        suffix += "_" + Path(args.encoder).name
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"self_training{suffix}.json"
    path.write_text(
        json.dumps(
            {
                "shots": args.shots,
                "seeds": args.seeds,
                "encoder": args.encoder,
                "scored_on": scored_on,
                "fine_tuned": args.fine_tune,
                "thresholds": args.thresholds,
                "per_seed": rows,
                "mean": means,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
