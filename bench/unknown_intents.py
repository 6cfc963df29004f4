"""Questions the knowledge base has no intent for: does the bot answer them anyway, or does it know?

Customers ask about things the knowledge base does not cover yet (a new product, a new policy). The right
intent does not exist, so any answer is a wrong one: the bot should ask "did you mean" or hand over to a
person. The open-intent protocol on BANKING77 (Zhang et al., "Deep Open Intent Classification with Adaptive
Decision Boundary", AAAI 2021): per seed, a share of the 77 intents (``--unknown-share``, 25 % by default)
is left out of the knowledge base; the engine is fitted as a training run fits it (frozen MiniLM, the
product's gate) on the other intents' training rows (``--shots`` per intent, 0 = all of them); the test
split's questions are scored, those of the known intents and those of the left-out ones apart.
``--validation`` scores 3,000 rows held out of train instead (bench/self_training.validation_split):
tune there, never on test.

Printed per seed at the default target precision, and as means for each target precision an operator may
choose without retraining (the gates a model is built with): for known intents, the share answered, the
answers' precision, the share asked "did you mean" (and how often the right intent was a choice) and the
share handed over; for unknown intents, the share answered (wrong by definition), asked and handed over;
for both, the share answered that goes to review anyway because the members disagree on the top intent.
JSON in
bench/results/unknown_intents[_SHOTS-shot][_validation][_ENCODER].json.

    .venv/bin/python bench/unknown_intents.py [--seeds 0 1 2] [--shots 0] [--unknown-share 0.25]
                                              [--validation] [--data DIR] [--encoder NAME]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_training import result_path, seeded_arguments, validation_split  # noqa: E402

from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import ANSWERED, CLARIFY, HANDOFF, AnsweringEngine, EngineConfig, Prediction  # noqa: E402
from bot.evaluation import sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

Rows = tuple[list[str], list[str]]
TARGETS = (0.9, 0.95, 0.97, 0.99)  # among bot.calibration.PRECISION_OPTIONS, the product's default included


def unknown_intents(labels: list[str], share: float, seed: int) -> set[str]:
    """The intents left out of the knowledge base for ``seed``: round(share x intents) of them."""
    intents = sorted(set(labels))
    count = int(round(share * len(intents)))
    if not 0 < count < len(intents):
        raise ValueError(f"--unknown-share {share} leaves {count} of {len(intents)} intents out")
    rng = np.random.default_rng([seed, 77])
    return {intents[i] for i in rng.choice(len(intents), size=count, replace=False)}


def only(rows: Rows, keep: Any) -> Rows:
    kept = [(t, label) for t, label in zip(*rows, strict=True) if keep(label)]
    return [t for t, _ in kept], [label for _, label in kept]


def score(predictions: list[Prediction], truths: list[str], unknown: set[str]) -> dict[str, dict[str, float]]:
    """Shares of statuses for the known and the unknown intents' questions, and the answers' precision."""
    figures: dict[str, dict[str, float]] = {}
    for group in ("known", "unknown"):
        pairs = [
            (p, t) for p, t in zip(predictions, truths, strict=True) if (t in unknown) == (group == "unknown")
        ]
        n = len(pairs)
        answered = [(p, t) for p, t in pairs if p.status == ANSWERED]
        clarified = [(p, t) for p, t in pairs if p.status == CLARIFY]
        figures[group] = {
            "questions": n,
            "answered": len(answered) / n,
            "clarify": len(clarified) / n,
            "handoff": sum(p.status == HANDOFF for p, _ in pairs) / n,
            # answered, and a review item all the same: the members disagree on the top intent (a routing
            # reason, crowd_feedback.review)
            "answered_members_disagree": sum(p.members_disagree for p, _ in answered) / n,
        }
        if group == "known":  # NaN when none was answered (or asked): no precision to speak of
            figures[group]["precision"] = (
                sum(p.intent == t for p, t in answered) / len(answered) if answered else math.nan
            )
            figures[group]["right_choice_offered"] = (
                sum(t in {c.intent for c in p.suggestions} for p, t in clarified) / len(clarified)
                if clarified
                else math.nan
            )
    return figures


def run_seed(
    seed: int, encoder: CachingEncoder, train: Rows, test: Rows, args: argparse.Namespace
) -> dict[str, Any]:
    if args.validation:
        train, test = validation_split(train, seed)
    unknown = unknown_intents(train[1], args.unknown_share, seed)
    known_rows = only(train, lambda label: label not in unknown)
    if args.shots:
        known_rows = sample_shots(*known_rows, shots=args.shots, seed=seed)
    engine = AnsweringEngine(EngineConfig(seed=seed), encoders={"minilm": encoder}, threads=2)
    started = time.perf_counter()
    engine.fit(*known_rows, progress=False)
    fit_seconds = time.perf_counter() - started
    by_target = {}
    for target in TARGETS:  # the gate each precision an operator may choose has (no refit)
        if not engine.use_target_precision(target):
            raise RuntimeError(f"the engine has no gate for target precision {target}")
        by_target[f"{target:g}"] = score(engine.predict_batch(test[0]), test[1], unknown)
    return {
        "unknown_intents": sorted(unknown),
        "training_rows": len(known_rows[0]),
        "fit_seconds": round(fit_seconds, 1),
        "by_target_precision": by_target,
    }


def table(runs: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'row':<14}{'known: answered':>16}{'(reviewed)':>11}{'precision':>11}{'did you mean':>14}"
        f"{'right offered':>15}{'handoff':>9}{'unknown: answered':>19}{'(reviewed)':>11}{'did you mean':>14}"
        f"{'handoff':>9}"
    )
    lines = [head]
    for row, r in runs.items():
        k, u = r["known"], r["unknown"]
        lines.append(
            f"{row:<14}{k['answered']:>16.4f}{k['answered_members_disagree']:>11.4f}{k['precision']:>11.4f}"
            f"{k['clarify']:>14.4f}{k['right_choice_offered']:>15.4f}{k['handoff']:>9.4f}{u['answered']:>19.4f}"
            f"{u['answered_members_disagree']:>11.4f}{u['clarify']:>14.4f}{u['handoff']:>9.4f}"
        )
    return "\n".join(lines)


def mean(runs: dict[int, dict[str, Any]], target: str) -> dict[str, dict[str, float]]:
    """Each figure's mean over the seeds, at one target precision."""
    rows = [r["by_target_precision"][target] for r in runs.values()]
    # A seed whose model answers nothing at that precision (it cannot reach it) has no precision: the mean
    # is over the others; its shares (all handed over) count as they are.
    return {
        group: {key: nan_mean([r[group][key] for r in rows]) for key in rows[0][group]}
        for group in ("known", "unknown")
    }


def nan_mean(values: list[float]) -> float:
    """The mean of the values that are not NaN; NaN when none is (no warning)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def main() -> None:
    parser = seeded_arguments(__doc__)  # --data, --out, --shots, --seeds, --encoder
    parser.set_defaults(shots=0)  # examples per known intent; 0: all of them
    parser.add_argument("--unknown-share", type=float, default=0.25)
    parser.add_argument("--validation", action="store_true", help="score 3,000 rows held out of train")
    args = parser.parse_args()
    if args.shots < 0 or args.shots == 1:
        parser.error("--shots takes 0 (all) or 2 and more")
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(args.encoder, threads=2))
    runs: dict[Any, dict[str, Any]] = {}
    for seed in args.seeds:
        runs[seed] = run_seed(seed, encoder, train, test, args)
        print(
            f"seed {seed}: {runs[seed]['training_rows']} training rows, fit {runs[seed]['fit_seconds']} s",
            flush=True,
        )
    default = f"{EngineConfig().target_precision:g}"
    summary = {target: mean(runs, target) for target in runs[args.seeds[0]]["by_target_precision"]}
    print(f"\nat the default target precision ({default}), per seed:")
    print(table({f"seed {seed}": r["by_target_precision"][default] for seed, r in runs.items()}))
    print("\nmeans over the seeds, per target precision (HELPLOOP_TARGET_PRECISION, or the Models page):")
    print(table({f"target {target}": figures for target, figures in summary.items()}))
    result_path(args, "unknown_intents").write_text(
        json.dumps(
            without_nan(
                {
                    "protocol": "open intents (ADB, AAAI 2021): intents left out of the knowledge base",
                    "scored_on": "3,000 rows held out of train"
                    if args.validation
                    else "BANKING77 test split",
                    "encoder": args.encoder,
                    "unknown_share": args.unknown_share,
                    "shots": args.shots or "all",
                    "default_target_precision": EngineConfig().target_precision,
                    "per_seed": {str(seed): r for seed, r in runs.items()},
                    "mean_by_target_precision": summary,
                },
            ),
            indent=2,
        )
        + "\n"
    )


def without_nan(value: Any) -> Any:
    """NaN as null (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return value


if __name__ == "__main__":
    main()
