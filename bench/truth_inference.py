"""Truth inference on every crowd set in shared/data/crowd: HelpLoop's strategies against crowd-kit, same run.

Columns: majority vote, HelpLoop's Dawid–Skene, HelpLoop's hierarchical Dawid–Skene (the default), and
crowd-kit's DawidSkene when crowd-kit is installed (`pip install -r requirements-bench.txt`), twice: as
shipped (the target's reference, with the number of EM iterations it ran) and with its stopping check off, run
to convergence (for context: its shipped check stops after 2 iterations on adult, 5 on weather_sentiment).
Accuracy is on the items that have truth; the truth is never used to fit anything.

    .venv/bin/python bench/truth_inference.py [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from crowd_feedback.aggregation import Answer, get_strategy  # noqa: E402
from training.gate import mcnemar_p  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_CROWD_DIR", ROOT.parent / "shared" / "data" / "crowd"))
METHODS = ("majority", "dawid_skene", "one_coin", "hierarchical_ds")
BEST = "hierarchical_ds"


def load(folder: Path) -> tuple[list[Answer], dict[str, str]]:
    with (folder / "answers.csv").open(newline="") as handle:
        answers = [Answer(r["item"], r["worker"], r["label"]) for r in csv.DictReader(handle)]
    with (folder / "truth.csv").open(newline="") as handle:
        truth = {r["item"]: r["label"] for r in csv.DictReader(handle)}
    return answers, truth


def crowd_kit_dawid_skene(
    answers: list[Answer], truth: dict[str, str], *, to_convergence: bool = False
) -> tuple[float, float, dict[str, str], int] | None:
    """crowd-kit's DawidSkene as shipped (100 iterations, tol 1e-5): the target's reference. With
    ``to_convergence`` its stopping check is switched off and it runs all 100 EM iterations: its check
    compares an objective that adds the log class prior once per *answer* (not once per item), which can fall
    while the likelihood EM maximises rises, so on some sets it stops after two iterations. Returns
    (accuracy, seconds, labels, iterations run)."""
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError:
        return None
    frame = pd.DataFrame(
        {
            "task": [a.item for a in answers],
            "worker": [a.worker for a in answers],
            "label": [a.label for a in answers],
        }
    )
    started = time.perf_counter()
    model = DawidSkene(n_iter=100, tol=-np.inf if to_convergence else 1e-5)
    labels = model.fit_predict(frame)
    seconds = time.perf_counter() - started
    known = [item for item in truth if item in labels.index]
    accuracy = sum(labels[item] == truth[item] for item in known) / len(known)
    labelled = {str(item): str(label) for item, label in labels.items()}
    return accuracy, seconds, labelled, len(model.loss_history_)


def paired_difference(
    ours: dict[str, str], reference: dict[str, str], truth: dict[str, str]
) -> dict[str, Any]:
    """Items only we get right, items only the reference gets right, and the exact McNemar p-value: whether
    a difference between two methods on the same items is more than a coin flip's worth of items."""
    known = [item for item in truth if item in ours and item in reference]
    ours_right = np.array([ours[item] == truth[item] for item in known])
    reference_right = np.array([reference[item] == truth[item] for item in known])
    only_reference, only_ours, p_value = mcnemar_p(reference_right, ours_right)
    return {"only_ours": only_ours, "only_reference": only_reference, "mcnemar_p": p_value}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    sets = sorted(p for p in args.data.iterdir() if (p / "answers.csv").is_file())
    if not sets:
        sys.exit(f"error: no crowd sets under {args.data} (pass --data or set HELPLOOP_CROWD_DIR)")
    results: dict[str, Any] = {}
    header = (
        f"{'set':<20}{'answers':>8}"
        + "".join(f"{m[:14]:>16}" for m in METHODS)
        + f"{'crowd-kit DS (its)':>19}  best>=ck  paired (best vs crowd-kit){'ck DS converged':>17}"
    )
    print(header)
    print("-" * len(header))
    for folder in sets:
        answers, truth = load(folder)
        row: dict[str, Any] = {"answers": len(answers), "items_with_truth": len(truth)}
        best_labels: dict[str, str] = {}
        for method in METHODS:
            started = time.perf_counter()
            result = get_strategy(method).aggregate(answers)
            if method == BEST:
                best_labels = result.labels()
            row[method] = {
                "accuracy": result.accuracy(truth),
                "seconds": time.perf_counter() - started,
                **(
                    {"details": {k: v for k, v in result.details.items() if k == "prior_strength"}}
                    if result.details
                    else {}
                ),
            }
        reference = crowd_kit_dawid_skene(answers, truth)
        converged = crowd_kit_dawid_skene(answers, truth, to_convergence=True)
        if reference is not None and converged is not None:
            row["crowd_kit_dawid_skene"] = {
                "accuracy": reference[0],
                "seconds": reference[1],
                "iterations": reference[3],
            }
            row["best_vs_crowd_kit"] = paired_difference(best_labels, reference[2], truth)
            row["crowd_kit_dawid_skene_converged"] = {
                "accuracy": converged[0],
                "seconds": converged[1],
                "iterations": converged[3],
            }
        results[folder.name] = row
        cells = "".join(f"{row[m]['accuracy']:>10.3f} {row[m]['seconds']:>4.1f}s" for m in METHODS)
        if reference is not None:
            ok = row[BEST]["accuracy"] >= reference[0] - 1e-9
            paired = row["best_vs_crowd_kit"]
            converged_accuracy = row["crowd_kit_dawid_skene_converged"]["accuracy"]
            tail = (
                f"{reference[0]:>13.3f} ({reference[3]:>3})  {'ok' if ok else 'MISS':<5}"
                f" +{paired['only_ours']}/-{paired['only_reference']} items,"
                f" McNemar p={paired['mcnemar_p']:.2f}{converged_accuracy:>12.3f}"
            )
        else:
            tail = f"{'(not installed)':>19}"
        print(f"{folder.name:<20}{len(answers):>8}{cells}{tail}", flush=True)
    largest = max(results, key=lambda name: results[name]["answers"])
    print(
        "crowd-kit DS (its): as shipped, with the EM iterations it ran; ck DS converged: the same model with"
        " its stopping check off (100 iterations)"
    )
    print(f"largest set: {largest}, {BEST} took {results[largest][BEST]['seconds']:.1f}s (target <= 10 s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "truth_inference.json").write_text(
        json.dumps({"best_method": BEST, "sets": results}, indent=2)
    )
    print(f"wrote {args.out / 'truth_inference.json'}")


if __name__ == "__main__":
    main()
