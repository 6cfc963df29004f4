"""A change to the fine-tuning recipe, tried on the validation split before the test split sees it.

Per seed, as ``bench/interpolation.py``: 3,000 rows of BANKING77 train are held out as the evaluation set
and N shots per intent are drawn from the rest (never the test split). The encoder is fine-tuned on the
shots outside the calibration split, the engine is calibrated on the held-out 15 % and refitted on all
shots (as a fine-tuning run does: ``training.finetune.fit_engine_with_fine_tuning``, so ``head_epochs``
adds the tuned classification head as a member), once with the recipe as it is and once with the ``--set``
changes. ``--shots 1000`` (more than any intent has) tries a change on the whole rest of train.

    .venv/bin/python bench/recipe_validate.py --set batch_size=64 [--seeds 0 1 2] [--encoder NAME]
    .venv/bin/python bench/recipe_validate.py --set batch_size=64 --skip-baseline   # the changed row only

Prints accuracy, ECE and coverage at 99 % precision per seed and variant, and the means; writes
bench/results/recipe_validate_<changes>[_ENCODER].json (rewritten after every seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from self_training import (  # noqa: E402
    figures_line,
    seed_means,
    seeded_arguments,
    validation_figures,
    validation_split,
)

from bot.encoders import DEFAULT_ENCODER  # noqa: E402
from bot.engine import EngineConfig  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from training.finetune import FineTuneConfig, fit_engine_with_fine_tuning  # noqa: E402


def parse_changes(pairs: list[str]) -> dict[str, Any]:
    """``["batch_size=64", "fresh_positives=false"]`` -> FineTuneConfig fields with their own types; an
    unknown field or a value of the wrong type is an error naming it."""
    fields = {f.name: f for f in dataclasses.fields(FineTuneConfig)}
    defaults = FineTuneConfig()
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in fields or key == "seed":
            raise ValueError(
                f"--set {pair!r}: expected FIELD=VALUE, FIELD one of {sorted(set(fields) - {'seed'})}"
            )
        kind = type(getattr(defaults, key))
        try:
            if kind is bool:
                if raw.lower() not in {"true", "false", "1", "0"}:
                    raise ValueError(raw)
                changes[key] = raw.lower() in {"true", "1"}
            else:
                changes[key] = kind(raw)
        except ValueError:
            wanted = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "text")
            raise ValueError(f"--set {pair!r}: {key} takes {wanted}") from None
    if not changes:
        raise ValueError("give at least one --set FIELD=VALUE")
    return changes


def main() -> None:
    parser = seeded_arguments(__doc__)
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--skip-baseline", action="store_true", help="run the changed recipe only")
    args = parser.parse_args()
    try:
        changes = parse_changes(args.changes)
    except ValueError as exc:
        parser.error(str(exc))
    tag = "_".join(f"{k}_{v}" for k, v in changes.items()).replace(",", "+")  # no commas in file names
    variants = {"changed": changes} if args.skip_baseline else {"recipe": {}, "changed": changes}
    train = read_labelled_csv(args.data / "train.csv")
    rows: dict[int, dict[str, dict[str, float]]] = {}
    for seed in args.seeds:
        pool, evaluation = validation_split(train, seed)
        few = sample_shots(*pool, shots=args.shots, seed=seed)
        base = EngineConfig(seed=seed, encoder={**EngineConfig().encoder, "source": args.encoder})
        rows[seed] = {}
        for name, change in variants.items():
            tuning = FineTuneConfig(seed=seed, **change)
            work = Path(tempfile.mkdtemp(prefix="helploop-recipe-"))
            started = time.perf_counter()
            # As a training run fits: the encoder (and the classification head, with head_epochs) tuned on
            # the shots outside the calibration split, the engine calibrated on that split, refitted on all.
            engine = fit_engine_with_fine_tuning(
                *few, config=base, tuning=tuning, work_dir=work, progress=False
            )
            result = ClassificationEvaluator(*evaluation, latency_samples=0).compute(engine)
            rows[seed][name] = {**validation_figures(result), "fit_seconds": time.perf_counter() - started}
            shutil.rmtree(work, ignore_errors=True)
            print(f"seed {seed} {name:<8} " + figures_line(rows[seed][name]), flush=True)
        means = write(args, tag, changes, rows)
    for name, figures in means.items():
        print(f"mean {name:<8} " + figures_line(figures))


def write(
    args: argparse.Namespace, tag: str, changes: dict[str, Any], rows: dict[int, dict[str, dict[str, float]]]
) -> dict[str, dict[str, float]]:
    means = seed_means(rows)
    suffix = "" if args.encoder == DEFAULT_ENCODER else "_" + Path(args.encoder).name
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"recipe_validate_{tag}{suffix}.json").write_text(
        json.dumps(
            {
                "scored_on": "3,000 rows held out of BANKING77 train (bench/self_training.validation_split)",
                "shots": args.shots,
                "encoder": args.encoder,
                "changes": changes,
                "per_seed": rows,
                "mean": means,
            },
            indent=2,
        )
        + "\n"
    )
    return means


if __name__ == "__main__":
    main()
