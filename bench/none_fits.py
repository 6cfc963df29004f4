"""What reviewers' "none fits" teaches: questions on a topic the knowledge base lacks, handed to a person.

Customers ask about topics the knowledge base has no intent for (bench/unknown_intents.py: at the default
gate, with every training row, about three in four such questions are answered with a neighbouring intent's
answer). Those turns reach review (a "did you mean", a handoff, the members' disagreement, the audit sample),
and reviewers answer "none fits — suggest a new intent". Until an operator makes an intent of them, a
retraining learns such resolved questions as out of scope (``oos``): the bot hands the topic to a person
instead of answering it with a neighbour's answer.

The open-intent protocol of bench/unknown_intents.py (per seed a quarter of the 77 BANKING77 intents left out
of the knowledge base), then, per seed:

1. the engine is fitted on the known intents' training rows (as before: no "none fits" yet);
2. the left-out intents' training questions arrive as traffic in a random order; half of the left-out topics
   (``--reviewed-share``) are the ones customers asked about so far. Of each such topic's questions, the first
   ``K`` that the product would route to review (status other than answered, the members disagreeing on the
   top intent, or the 2 % audit sample of confident answers) are resolved "none fits" (reviewers are right
   here; bench/truth_inference.py measures how often they are);
3. the engine is fitted again with those questions as ``oos`` rows (``training.build.training_snapshot``
   does this with the crowd's resolved "none fits" items), for each ``K`` in ``--per-topic``;
4. the test split is scored: the known intents' questions (answered, precision, "did you mean", top intent
   right: what the promotion gate compares), the reviewed left-out topics' questions and the other left-out
   topics' questions (answered: wrong by definition; "did you mean"; handed over).

``--validation`` scores 3,000 rows held out of train instead (tune there, never on test). JSON in
bench/results/none_fits[_SHOTS-shot][_validation][_ENCODER].json.

    .venv/bin/python bench/none_fits.py [--seeds 0 1 2] [--per-topic 3 10] [--reviewed-share 0.5]
                                        [--shots 0] [--validation] [--data DIR] [--encoder NAME]
"""

from __future__ import annotations

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
from unknown_intents import Rows, nan_mean, only, unknown_intents, without_nan  # noqa: E402

from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import (  # noqa: E402
    ANSWERED,
    CLARIFY,
    HANDOFF,
    OUT_OF_SCOPE,
    AnsweringEngine,
    EngineConfig,
    Prediction,
)
from bot.evaluation import sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

AUDIT_RATE = 0.02  # the product's default audit sample of confident answers (Settings.audit_rate)
GROUPS = ("known", "reviewed_unknown", "other_unknown")


def routed(prediction: Prediction, rng: np.random.Generator) -> bool:
    """Would the product make this turn a review item? (crowd_feedback.routing's reasons, thumbs aside.)"""
    if prediction.status != ANSWERED or prediction.members_disagree:
        return True
    return bool(rng.random() < AUDIT_RATE)


def none_fits_rows(
    engine: AnsweringEngine, pool: Rows, topics: list[str], per_topic: int, seed: int
) -> tuple[list[str], dict[str, int]]:
    """The first ``per_topic`` questions of each topic (in a seeded random order) that ``engine`` routes to
    review, and how many questions of each topic arrived before that many were routed."""
    rng = np.random.default_rng([seed, 404])
    chosen: list[str] = []
    arrived: dict[str, int] = {}
    for topic in topics:
        questions = [t for t, label in zip(*pool, strict=True) if label == topic]
        order = rng.permutation(len(questions))
        predictions = engine.predict_batch([questions[i] for i in order])
        taken = 0
        for seen, (i, prediction) in enumerate(zip(order, predictions, strict=True), start=1):
            if routed(prediction, rng):
                chosen.append(questions[i])
                taken += 1
                if taken == per_topic:
                    arrived[topic] = seen
                    break
        else:
            arrived[topic] = len(questions)
    return chosen, arrived


def score(
    predictions: list[Prediction], truths: list[str], unknown: set[str], reviewed: set[str]
) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for group in GROUPS:

        def member(truth: str, group: str = group) -> bool:
            if group == "known":
                return truth not in unknown
            return (truth in reviewed) == (group == "reviewed_unknown") and truth in unknown

        pairs = [(p, t) for p, t in zip(predictions, truths, strict=True) if member(t)]
        n = len(pairs)
        answered = [(p, t) for p, t in pairs if p.status == ANSWERED]
        figures[group] = {
            "questions": n,
            "answered": len(answered) / n,
            "clarify": sum(p.status == CLARIFY for p, _ in pairs) / n,
            "handoff": sum(p.status == HANDOFF for p, _ in pairs) / n,
            "top_intent_out_of_scope": sum(p.top_intent == OUT_OF_SCOPE for p, _ in pairs) / n,
        }
        if group == "known":
            figures[group]["precision"] = (
                sum(p.intent == t for p, t in answered) / len(answered) if answered else math.nan
            )
            figures[group]["top_intent_right"] = sum(p.top_intent == t for p, t in pairs) / n
    return figures


def run_seed(seed: int, encoder: CachingEncoder, train: Rows, test: Rows, args: Any) -> dict[str, Any]:
    if args.validation:
        train, test = validation_split(train, seed)
    unknown = unknown_intents(train[1], args.unknown_share, seed)
    order = np.random.default_rng([seed, 405]).permutation(sorted(unknown))
    reviewed = sorted(str(t) for t in order[: int(round(args.reviewed_share * len(order)))])
    known_rows = only(train, lambda label: label not in unknown)
    if args.shots:
        known_rows = sample_shots(*known_rows, shots=args.shots, seed=seed)
    config = EngineConfig(seed=seed)
    result: dict[str, Any] = {
        "unknown_intents": sorted(unknown),
        "reviewed_topics": reviewed,
        "by_per_topic": {},
    }
    baseline: AnsweringEngine | None = None
    for per_topic in [0, *args.per_topic]:
        texts, labels = list(known_rows[0]), list(known_rows[1])
        arrived: dict[str, int] = {}
        if per_topic:
            assert baseline is not None
            extra, arrived = none_fits_rows(
                baseline, only(train, lambda label: label in reviewed), reviewed, per_topic, seed
            )
            texts += extra
            labels += [OUT_OF_SCOPE] * len(extra)
        engine = AnsweringEngine(config, encoders={"minilm": encoder}, threads=2)
        started = time.perf_counter()
        engine.fit(texts, labels, progress=False)
        seconds = time.perf_counter() - started
        if not per_topic:
            baseline = engine
        result["by_per_topic"][str(per_topic)] = {
            "none_fits_rows": len(texts) - len(known_rows[0]),
            "questions_arrived": sum(arrived.values()),
            "fit_seconds": round(seconds, 1),
            **score(engine.predict_batch(test[0]), test[1], unknown, set(reviewed)),
        }
        print(f"seed {seed}, {per_topic} a topic: fit {seconds:.0f} s", flush=True)
    return result


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'row':<22}{'oos rows':>9}{'known: answered':>16}{'precision':>10}{'did you mean':>13}"
        f"{'top right':>10}{'reviewed topics: answered':>26}{'handed over':>12}"
        f"{'other topics: answered':>23}{'handed over':>12}"
    )
    lines = [head]
    for name, r in rows.items():
        k, u, o = r["known"], r["reviewed_unknown"], r["other_unknown"]
        lines.append(
            f"{name:<22}{r['none_fits_rows']:>9.0f}{k['answered']:>16.4f}{k['precision']:>10.4f}"
            f"{k['clarify']:>13.4f}{k['top_intent_right']:>10.4f}{u['answered']:>26.4f}{u['handoff']:>12.4f}"
            f"{o['answered']:>23.4f}{o['handoff']:>12.4f}"
        )
    return "\n".join(lines)


def mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's mean over the seeds (a nested dict of floats)."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = mean([r[key] for r in runs])
        elif isinstance(value, (int, float)):
            out[key] = nan_mean([float(r[key]) for r in runs])
    return out


def main() -> None:
    parser = seeded_arguments(__doc__)
    parser.set_defaults(shots=0)
    parser.add_argument("--per-topic", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--unknown-share", type=float, default=0.25)
    parser.add_argument("--reviewed-share", type=float, default=0.5)
    parser.add_argument("--validation", action="store_true", help="score 3,000 rows held out of train")
    args = parser.parse_args()
    if any(k < 1 for k in args.per_topic):
        parser.error("--per-topic takes counts of 1 and more")
    if not 0 < args.reviewed_share < 1:
        parser.error("--reviewed-share takes a share between 0 and 1 (both groups need topics)")
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(args.encoder, threads=2))
    runs = {seed: run_seed(seed, encoder, train, test, args) for seed in args.seeds}
    summary = {
        k: mean([r["by_per_topic"][k] for r in runs.values()]) for k in runs[args.seeds[0]]["by_per_topic"]
    }
    for seed, r in runs.items():
        print(f"\nseed {seed} (reviewed topics: {', '.join(r['reviewed_topics'])}):")
        print(table({f"{k} a topic": v for k, v in r["by_per_topic"].items()}))
    print(f"\nmeans over seeds {', '.join(map(str, args.seeds))} (default gate):")
    print(table({f"{k} a topic": v for k, v in summary.items()}))
    result_path(args, "none_fits").write_text(
        json.dumps(
            without_nan(
                {
                    "protocol": "open intents (ADB, AAAI 2021) with the crowd's 'none fits' trained as oos",
                    "scored_on": "3,000 rows held out of train"
                    if args.validation
                    else "BANKING77 test split",
                    "encoder": args.encoder,
                    "unknown_share": args.unknown_share,
                    "reviewed_share": args.reviewed_share,
                    "shots": args.shots or "all",
                    "audit_rate": AUDIT_RATE,
                    "per_seed": {str(seed): r for seed, r in runs.items()},
                    "mean_by_per_topic": summary,
                }
            ),
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
