"""Does the knowledge-base check find examples filed under the wrong intent, and what does fixing them win?

BANKING77's training split (10,003 rows) is the knowledge base. For each seed, ``--noise`` (5 %) of its
examples are moved to another intent, two ways:

  random      — any other intent, uniformly (a slip, a bad bulk import)
  confusable  — the intent a clean model, not trained on that example, gives the most probability after the
                right one (the plausible mistake: card_arrival for card_delivery_estimate)

The engine (frozen MiniLM, the product's defaults: 5-fold out-of-fold calibration) is fitted on the noisy
knowledge base, and ``bot.label_issues.find_label_issues``, what Knowledge → Check and ``helploop kb check``
list, reads its held-out rows. Printed per way: the rows flagged, precision (moved rows among the flagged),
recall (flagged among the moved), the share of the found rows whose suggested intent is the right one, and
how many of the moved rows reading as many rows at random would find, and BANKING77 test accuracy of the
engine fitted on the clean knowledge base, on the noisy one, on the noisy one after an operator pressed "Move"
on every flagged row unread, and after one who read each flagged row and filed it right (Move or Keep). The
test split is only scored: the rule has no knob to tune.

The clean knowledge base is checked too: BANKING77 has label errors of its own, so some "false" flags on the
noisy sets are real; the clean set's flagged rows are written to the JSON for reading.

    .venv/bin/python bench/kb_check.py [--seeds 0 1 2] [--noise 0.05] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.loop_sim import DEFAULT_DATA  # noqa: E402
from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import AnsweringEngine, EngineConfig  # noqa: E402
from bot.label_issues import LabelIssue, find_label_issues  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

WAYS = ("random", "confusable")


def fit(encoder: CachingEncoder, texts: list[str], labels: list[str], seed: int) -> AnsweringEngine:
    return AnsweringEngine(EngineConfig(seed=seed), encoders={"minilm": encoder}).fit(texts, labels)


def accuracy(engine: AnsweringEngine, test: tuple[list[str], list[str]]) -> float:
    predictions = engine.predict_batch(test[0])
    return float(np.mean([p.top_intent == label for p, label in zip(predictions, test[1], strict=True)]))


def issues_of(engine: AnsweringEngine) -> tuple[list[LabelIssue], float]:
    assert engine.held_out is not None
    started = time.perf_counter()
    issues = find_label_issues(engine.held_out, engine.labels)
    return issues, time.perf_counter() - started


def runner_up(engine: AnsweringEngine, labels: list[str]) -> list[str]:
    """Per row, the intent the clean model (not trained on the row) gives the most after the right one."""
    rows = engine.held_out
    assert rows is not None
    out = []
    for r, label in enumerate(labels):
        others = [engine.labels[int(i)] for i in rows.top[r] if engine.labels[int(i)] != label]
        out.append(others[0])
    return out


def run_way(
    way: str,
    seed: int,
    encoder: CachingEncoder,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    confusable: list[str],
    noise: float,
) -> dict[str, Any]:
    texts, labels = train
    rng = np.random.default_rng([seed, WAYS.index(way)])
    names = sorted(set(labels))
    moved = set(int(i) for i in rng.choice(len(labels), size=round(noise * len(labels)), replace=False))
    noisy = list(labels)
    for i in moved:
        if way == "random":
            noisy[i] = str(rng.choice([n for n in names if n != labels[i]]))
        else:
            noisy[i] = confusable[i]
    started = time.perf_counter()
    engine = fit(encoder, texts, noisy, seed)
    fit_seconds = time.perf_counter() - started
    issues, check_seconds = issues_of(engine)
    found = [issue for issue in issues if issue.row in moved]
    fixed = list(noisy)
    for issue in issues:  # an operator who presses "Move" on every flagged row, unread
        fixed[issue.row] = issue.suggested
    reviewed = list(noisy)
    for issue in issues:  # an operator who reads each flagged row and files it right (Move, or Keep)
        reviewed[issue.row] = labels[issue.row]
    result = {
        "moved": len(moved),
        "flagged": len(issues),
        "precision": len(found) / max(len(issues), 1),
        "recall": len(found) / len(moved),
        "suggested_right": float(np.mean([issue.suggested == labels[issue.row] for issue in found]))
        if found
        else 0.0,
        "flagged_unmoved": len(issues) - len(found),
        "labels_wrong_after_moving": sum(a != b for a, b in zip(fixed, labels, strict=True)),
        "labels_wrong_after_review": sum(a != b for a, b in zip(reviewed, labels, strict=True)),
        # Reading as many rows picked at random finds this many of the moved ones, on average.
        "random_review_finds": len(issues) * len(moved) / len(labels),
        "accuracy_noisy": accuracy(engine, test),
        "fit_seconds": fit_seconds,
        "check_seconds": check_seconds,
    }
    result["accuracy_moved"] = accuracy(fit(encoder, texts, fixed, seed), test)
    result["accuracy_reviewed"] = accuracy(fit(encoder, texts, reviewed, seed), test)
    print(
        f"seed {seed} {way:<10}: {len(issues)} flagged, precision {result['precision']:.1%}, recall "
        f"{result['recall']:.1%}; test {result['accuracy_noisy']:.2%} noisy, "
        f"{result['accuracy_moved']:.2%} after Move on all, {result['accuracy_reviewed']:.2%} after "
        f"review (fit {fit_seconds:.0f} s, check "
        f"{check_seconds * 1000:.0f} ms)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kb_check.json")
    args = parser.parse_args()
    files = [args.data / "train.csv", args.data / "test.csv"]
    for file in files:
        if not file.is_file():
            sys.exit(f"error: {file} not found (set --data or HELPLOOP_BANKING77_DIR)")
    train, test = (read_labelled_csv(file) for file in files)
    encoder = CachingEncoder(SentenceTransformerEncoder())
    started = time.perf_counter()
    clean = fit(encoder, *train, 0)
    clean_seconds = time.perf_counter() - started
    clean_issues, clean_check = issues_of(clean)
    clean_accuracy = accuracy(clean, test)
    print(
        f"clean: {len(clean_issues)} of {len(train[0])} examples flagged; test {clean_accuracy:.2%} "
        f"(fit {clean_seconds:.0f} s)",
        flush=True,
    )
    confusable = runner_up(clean, train[1])
    runs = {
        way: {seed: run_way(way, seed, encoder, train, test, confusable, args.noise) for seed in args.seeds}
        for way in WAYS
    }
    keys = (
        "flagged",
        "precision",
        "recall",
        "suggested_right",
        "random_review_finds",
        "accuracy_noisy",
        "accuracy_moved",
        "accuracy_reviewed",
    )
    summary = {way: {k: float(np.mean([r[k] for r in runs[way].values()])) for k in keys} for way in WAYS}
    print(
        f"\nBANKING77 train split as the knowledge base, {args.noise:.0%} of examples moved, seeds "
        f"{args.seeds}; test split accuracy (clean: {clean_accuracy:.2%})"
    )
    print(
        f"{'noise':<12}{'flagged':>8}{'precision':>11}{'recall':>8}{'names right':>13}{'random finds':>14}"
        f"{'noisy':>8}{'move all':>10}{'reviewed':>10}"
    )
    for way, s in summary.items():
        print(
            f"{way:<12}{s['flagged']:>8.0f}{s['precision']:>11.1%}{s['recall']:>8.1%}"
            f"{s['suggested_right']:>13.1%}{s['random_review_finds']:>14.0f}{s['accuracy_noisy']:>8.2%}"
            f"{s['accuracy_moved']:>10.2%}{s['accuracy_reviewed']:>10.2%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "data": str(args.data),
                "seeds": args.seeds,
                "noise": args.noise,
                "clean": {
                    "flagged": len(clean_issues),
                    "accuracy": clean_accuracy,
                    "fit_seconds": clean_seconds,
                    "check_seconds": clean_check,
                    "issues": [issue.to_dict() for issue in clean_issues],
                },
                "summary": summary,
                "per_seed": {way: {str(k): v for k, v in r.items()} for way, r in runs.items()},
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
