"""What the customer says the question is not: the message read whole, or the negated clause's intent ruled
out (``bot.negation``).

The engine is fitted on the BANKING77 training split as `helploop build` fits it (frozen default encoder, the
product's gate). Scored three ways from the same fit: negation off (the message read whole, the bot before
it), the intent ruled out with the rest renormalised and answered as the gate says, and as shipped (ruling
out alone answers only when one intent is left with ``RULED_OUT_CHOICE`` of the weight; else "did you mean"
with those left).

- ``bench/data/contrast.csv``: 65 hand-written messages that say what they are not about and what they are
  ("I don't want to close my account, I just want to freeze my card"), labelled with a BANKING77 intent:
  ``chosen`` (30) and ``holdout`` (15) written together before the rule was coded, the rule shaped on the
  first; ``after`` (20) written once it was coded, before any was read by it, and only measured. Per set:
  answered right, answered wrong, "did you mean", and the right intent one click away (answered, or among
  the choices).
- The evaluation questions as written (BANKING77 test; ``--validation``: 3,000 rows held out of train): how
  many hold a contrast, and how many answers change.

    .venv/bin/python bench/negation.py [--validation] [--seed 0] [--data DIR]

Writes bench/results/negation[_validation].json.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_training import fitted_for_split, reply_figures, split_arguments, split_name  # noqa: E402

import bot.engine  # noqa: E402
from bot.engine import ANSWERED, AnsweringEngine, Prediction  # noqa: E402
from bot.negation import contrast_of  # noqa: E402

MESSAGES = ROOT / "bench" / "data" / "contrast.csv"
SETS = ("chosen", "holdout", "after")
OFF, GATE, SHIPPED = "read whole", "ruled out, the gate answers", "ruled out (shipped)"
WAYS = (OFF, GATE, SHIPPED)


def read_messages(path: Path = MESSAGES) -> dict[str, tuple[list[str], list[str]]]:
    """The hand-written messages per set: (texts, intents)."""
    sets: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in SETS}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if row["set"] not in sets:
                raise ValueError(f"{path}, line {line}: set must be one of {SETS}, not {row['set']!r}")
            sets[row["set"]][0].append(row["text"])
            sets[row["set"]][1].append(row["intent"])
    return sets


def score(predictions: list[Prediction], labels: list[str]) -> dict[str, int]:
    return reply_figures(predictions, labels) | {
        "ruled_out": sum(p.ruled_out is not None for p in predictions)
    }


def read_three_ways(engine: AnsweringEngine, texts: list[str]) -> dict[str, list[Prediction]]:
    """``texts`` read whole, ruled out with the gate answering, and as shipped."""
    kept = bot.engine.RULED_OUT_CHOICE
    out: dict[str, list[Prediction]] = {}
    try:
        engine.negation = False
        out[OFF] = engine.predict_batch(texts)
        engine.negation = True
        bot.engine.RULED_OUT_CHOICE = 2.0  # no intent reaches it: no choice is offered instead of the answer
        out[GATE] = engine.predict_batch(texts)
        bot.engine.RULED_OUT_CHOICE = kept
        out[SHIPPED] = engine.predict_batch(texts)
    finally:
        bot.engine.RULED_OUT_CHOICE = kept
        engine.negation = True
    return out


def changed(before: list[Prediction], after: list[Prediction], labels: list[str]) -> dict[str, int]:
    """How many replies differ (status or intent), and how many right answers are no longer given."""
    moved = [
        (b, a, y)
        for b, a, y in zip(before, after, labels, strict=True)
        if (b.status, b.intent) != (a.status, a.intent)
    ]
    return {
        "changed": len(moved),
        "right_lost": sum(b.status == ANSWERED and b.intent == y for b, _, y in moved),
        "right_gained": sum(a.status == ANSWERED and a.intent == y for _, a, y in moved),
    }


def main() -> None:
    parser = split_arguments(__doc__)
    parser.add_argument("--messages", type=Path, default=MESSAGES)
    args = parser.parse_args()
    sets = read_messages(args.messages)
    engine, evaluation = fitted_for_split(args)
    result: dict[str, Any] = {"evaluation": split_name(args), "encoder": args.encoder, "seed": args.seed}
    for name, (texts, labels) in sets.items():
        read = read_three_ways(engine, texts)
        result[name] = {way: score(read[way], labels) for way in WAYS}
        result[name]["replies"] = [
            {"text": t, "intent": y, **{way: [read[way][i].status, read[way][i].intent] for way in WAYS}}
            for i, (t, y) in enumerate(zip(texts, labels, strict=True))
        ]
    texts, labels = evaluation
    read = read_three_ways(engine, texts)
    result["questions"] = {
        "contrasts": [t for t in texts if contrast_of(t) is not None],
        **{way: score(read[way], labels) for way in WAYS},
        **{f"changed ({way})": changed(read[OFF], read[way], labels) for way in (GATE, SHIPPED)},
    }
    for name in (*SETS, "questions"):
        print(
            f"{name} ({result['evaluation'] if name == 'questions' else 'hand-written'}, seed {args.seed}):"
        )
        print(f"{'':>30}{'right':>8}{'wrong':>8}{'asked':>8}{'one click':>11}{'ruled out':>11}")
        for way in WAYS:
            f = result[name][way]
            print(
                f"{way:>30}{f['answered_right']:>8}{f['answered_wrong']:>8}{f['asked']:>8}"
                f"{f['reachable']:>11}{f['ruled_out']:>11}"
            )
    questions = result["questions"]
    print(
        f"questions holding a contrast: {len(questions['contrasts'])}; changed: "
        + ", ".join(f"{way} {questions[f'changed ({way})']}" for way in (GATE, SHIPPED))
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "negation" + ("_validation" if args.validation else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
