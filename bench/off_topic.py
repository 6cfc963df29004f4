"""Off-topic messages: what the familiarity floor (``EngineConfig.familiarity_quantile``) stops and costs.

A bank's bot is asked "what's the weather in Paris?". No intent fits, yet a model that knows only banking
intents spreads its probability over them, and the nearest one can win with enough confidence to be
answered ("country support"), or to be offered as "did you mean" choices that cannot fit. The floor hands
over a message less similar to its nearest knowledge-base example than nearly all held-out known questions
are to theirs (the ``familiarity_quantile`` share of them, 0.25 % by default).

The engine is fitted on the BANKING77 training split as `helploop build` fits it (frozen default encoder;
``--shots N``: N questions per intent, 0 = all), per seed, and read twice: without the floor (the bot
before it) and with it (the default). Scored:

- ``bench/data/off_topic.csv``: 60 hand-written messages that are no question for a bank (weather, sport,
  recipes, gadgets, trivia), in two sets written together before the floor was coded: ``chosen`` (40: the
  quantile was chosen on them, with the validation split) and ``holdout`` (20: only measured). Per set:
  answered (wrong by definition), "did you mean" (no choice can fit) and handed over.
- The known questions: the BANKING77 test split (``--validation``: 3,000 rows held out of train, where the
  quantile was chosen; never tune on test): the share answered, those answers' precision, and the answers
  the floor withholds (how many of them were right).

``--quantiles`` also reads the floor at other shares of the same held-out rows (no refit); not at cold start
(``--shots 1``: one example an intent, whose floor is at least ``bot.calibration.COLD_START_FLOOR``), where
the engine's own floor is read. ``--intents N``:
a small knowledge base, N of the 77 intents drawn per seed (training rows and known questions of those
intents only; the others' questions are left out, not counted as off topic): the floor is a quantile of
fewer held-out rows there.

    .venv/bin/python bench/off_topic.py [--shots 0] [--seeds 0 1 2] [--validation] [--intents N]
                                        [--quantiles 0.0025 0.005 0.01] [--data DIR] [--encoder NAME]

Writes bench/results/off_topic[_N-intents][_N-shot][_validation][_ENCODER].json.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Sequence
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

MESSAGES = ROOT / "bench" / "data" / "off_topic.csv"
SETS = ("chosen", "holdout")
WITHOUT = "without the floor"


def read_messages(path: Path) -> dict[str, list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_set: dict[str, list[str]] = {name: [] for name in SETS}
    for line, row in enumerate(rows, start=2):
        if row.get("set") not in by_set or not (row.get("text") or "").strip():
            raise SystemExit(f"{path}:{line}: needs a text and a set ({', '.join(SETS)})")
        by_set[row["set"]].append(row["text"].strip())
    return by_set


def statuses(predictions: Sequence[Prediction]) -> dict[str, int]:
    return {status: sum(p.status == status for p in predictions) for status in (ANSWERED, CLARIFY, HANDOFF)}


def known(predictions: Sequence[Prediction], labels: Sequence[str], before: Sequence[Prediction]) -> dict:
    """The known questions' figures, and the answers the floor took back from ``before`` (no floor)."""
    answered = [p.intent == y for p, y in zip(predictions, labels, strict=True) if p.status == ANSWERED]
    withheld = [
        b.intent == y
        for p, b, y in zip(predictions, before, labels, strict=True)
        if b.status == ANSWERED and p.status != ANSWERED
    ]
    return {
        "questions": len(labels),
        "answered": len(answered) / len(labels),
        "answered_precision": sum(answered) / len(answered) if answered else None,
        "handed_over": sum(p.status == HANDOFF for p in predictions) / len(labels),
        "unfamiliar": sum(p.unfamiliar for p in predictions),
        "answers_withheld": len(withheld),
        "of_them_right": sum(withheld),
    }


def read_with_floor(
    engine: AnsweringEngine,
    floor: float | None,
    messages: dict[str, list[str]],
    evaluation: tuple[list[str], list[str]],
    before: list[Prediction] | None,
) -> tuple[dict[str, Any], list[Prediction]]:
    engine.familiarity_floor = floor
    questions = engine.predict_batch(evaluation[0])
    figures: dict[str, Any] = {"floor": floor}
    figures |= {name: statuses(engine.predict_batch(texts)) for name, texts in messages.items()}
    figures["known"] = known(questions, evaluation[1], before if before is not None else questions)
    return figures, questions


def of_intents(rows: tuple[list[str], list[str]], kept: set[str]) -> tuple[list[str], list[str]]:
    pairs = [(text, label) for text, label in zip(*rows, strict=True) if label in kept]
    return [text for text, _ in pairs], [label for _, label in pairs]


def run_seed(
    seed: int,
    encoder: CachingEncoder,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    messages: dict[str, list[str]],
    args: Any,
) -> dict[str, Any]:
    evaluation = test
    if args.validation:
        train, evaluation = validation_split(train, seed)
    if args.intents:
        names = sorted(set(train[1]))
        kept = set(np.random.default_rng(seed).choice(names, size=args.intents, replace=False).tolist())
        train, evaluation = of_intents(train, kept), of_intents(evaluation, kept)
    rows = sample_shots(*train, shots=args.shots, seed=seed) if args.shots else train
    engine = AnsweringEngine(EngineConfig(seed=seed), encoders={"minilm": encoder}, threads=2)
    started = time.perf_counter()
    engine.fit(*rows, progress=False)
    fit_seconds = time.perf_counter() - started
    default = engine.familiarity_floor
    held = engine.held_out_familiarity()
    assert held is not None and default is not None  # the default members include a nearest neighbour
    by_floor: dict[str, Any] = {}
    by_floor[WITHOUT], before = read_with_floor(engine, None, messages, evaluation, None)
    # Cold start: held-out rows are near other intents' examples only, so the engine's own floor (at least
    # COLD_START_FLOOR) is read alone.
    cold = engine.gate.similarity is not None
    quantiles = [engine.config.familiarity_quantile] if cold else set(args.quantiles)
    for quantile in sorted({*quantiles, engine.config.familiarity_quantile}):
        floor = default if cold else float(np.quantile(held, quantile))
        by_floor[f"{quantile:g}"], _ = read_with_floor(engine, floor, messages, evaluation, before)
    engine.familiarity_floor = default
    return {"training_rows": len(rows[0]), "fit_seconds": round(fit_seconds, 1), "by_floor": by_floor}


def table(runs: dict[int, dict[str, Any]]) -> str:
    seeds = list(runs)
    names = list(runs[seeds[0]]["by_floor"])
    header = (
        "| floor (quantile) | known: answered | their precision | answers withheld (right) | "
        + " | ".join(f"{s}: answered / did you mean / handed over" for s in SETS)
        + " |"
    )
    lines = [header, "|" + "---|" * (4 + len(SETS))]
    for name in names:
        figures = [runs[s]["by_floor"][name] for s in seeds]

        def mean(key: str, figures: list[dict[str, Any]] = figures) -> float:
            return float(np.mean([f["known"][key] for f in figures]))

        cells = [
            name,
            f"{mean('answered') * 100:.2f} %",
            f"{mean('answered_precision') * 100:.2f} %",
            f"{mean('answers_withheld'):.1f} ({mean('of_them_right'):.1f})",
        ]
        for s in SETS:
            cells.append(
                " / ".join(
                    f"{np.mean([f[s][status] for f in figures]):.1f}"
                    for status in (ANSWERED, CLARIFY, HANDOFF)
                )
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = seeded_arguments(__doc__)  # --data, --out, --shots, --seeds, --encoder
    parser.set_defaults(shots=0)
    parser.add_argument("--validation", action="store_true", help="score 3,000 rows held out of train")
    parser.add_argument("--quantiles", type=float, nargs="*", default=[0.005, 0.01])
    parser.add_argument("--messages", type=Path, default=MESSAGES)
    parser.add_argument("--intents", type=int, default=0, help="N intents drawn per seed (0: all 77)")
    args = parser.parse_args()
    if args.intents and not 2 <= args.intents <= 77:
        parser.error("--intents takes 2 to 77 (0: all)")
    if args.shots < 0:
        parser.error("--shots takes 0 (all) or more")
    if any(not 0 < q < 1 for q in args.quantiles):
        parser.error("--quantiles are shares between 0 and 1")
    messages = read_messages(args.messages)
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(args.encoder, threads=2))
    runs: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        runs[seed] = run_seed(seed, encoder, train, test, messages, args)
        default = runs[seed]["by_floor"][f"{EngineConfig().familiarity_quantile:g}"]
        print(
            f"seed {seed}: {runs[seed]['training_rows']} training rows, fit {runs[seed]['fit_seconds']} s, "
            f"floor {default['floor']:.3f}",
            flush=True,
        )
    scored_on = "3,000 rows held out of train" if args.validation else "BANKING77 test split"
    print(f"\nmeans over seeds {args.seeds}; known questions: {scored_on}; off-topic messages: counts")
    print(table(runs))
    result_path(args, "off_topic" + (f"_{args.intents}-intents" if args.intents else "")).write_text(
        json.dumps(
            {
                "known_questions": scored_on,
                "messages": {s: len(t) for s, t in messages.items()},
                "encoder": args.encoder,
                "shots": args.shots or "all",
                "intents": args.intents or "all",
                "default_quantile": EngineConfig().familiarity_quantile,
                "per_seed": {str(seed): r for seed, r in runs.items()},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
