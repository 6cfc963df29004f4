"""Synonyms: what reading a customer's word as the knowledge base's own (``bot.synonyms``) wins and costs.

The engine is fitted on the BANKING77 training split as `helploop build` fits it (frozen default encoder, the
product's gate) and given ``GROUPS`` as the knowledge base's synonyms (``AnsweringEngine.update_synonyms``:
each group read as its phrase the examples use most). The groups were written before this bench first ran
and have not been changed on its figures: words other banks' customers use for what BANKING77 calls
something else (UK and US banking words, abbreviations, a product's other name), not tuned to the test
questions.

For each group's other phrases: every test question that holds the group's reading (whole words, any case)
is asked with that phrase instead ("Where is the nearest ATM?" -> "Where is the nearest cashpoint?"), with
and without the synonyms. Per phrase and in all: accuracy of the top intent, the share answered, the share
answered right, the share declined as off topic. And what the synonyms cost where nobody uses another word:
the test split as written, with and without them (a question that already holds one of the other phrases is
read differently).

    .venv/bin/python bench/synonyms.py [--validation] [--seed 0] [--data DIR]

Writes bench/results/synonyms[_validation].json.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_training import fitted_for_split, split_arguments, split_name  # noqa: E402

from bot.engine import ANSWERED, AnsweringEngine, Prediction  # noqa: E402
from bot.synonyms import Synonyms  # noqa: E402

# Written before the first run; the phrase BANKING77's examples use is in each group (the reading).
GROUPS = [
    ["ATM", "cashpoint", "cash machine", "hole in the wall"],
    ["top up", "recharge", "reload"],
    ["exchange rate", "FX rate"],
    ["transfer", "wire"],
    ["virtual card", "digital card", "e-card"],
    ["disposable", "single-use", "burner"],
    ["contactless", "tap to pay", "tap and go"],
    ["Apple Pay", "iPhone wallet"],
    ["passcode", "app password"],
    ["PIN", "PIN code", "secret number"],
    ["Mastercard", "MC"],
    ["identity", "ID"],
]


def whole(phrase: str) -> re.Pattern[str]:
    """``phrase`` as whole words, any case, any spacing."""
    body = r"\s+".join(map(re.escape, phrase.split()))
    return re.compile(rf"(?<![\w'’])(?:{body})(?![\w'’])", re.IGNORECASE)


def score(predictions: list[Prediction], labels: list[str]) -> dict[str, float]:
    n = max(len(labels), 1)
    pairs = list(zip(predictions, labels, strict=True))
    return {
        "accuracy": sum(p.top_intent == y for p, y in pairs) / n,
        "answered": sum(p.status == ANSWERED for p, _ in pairs) / n,
        "answered_right": sum(p.status == ANSWERED and p.intent == y for p, y in pairs) / n,
        "declined": sum(p.off_topic for p, _ in pairs) / n,
    }


def with_and_without(engine: AnsweringEngine, texts: list[str], labels: list[str]) -> dict[str, Any]:
    """``texts`` read without the engine's synonyms and with them (put back after)."""
    synonyms = engine.synonyms
    engine.synonyms = Synonyms()
    without = score(engine.predict_batch(texts), labels) if texts else None
    engine.synonyms = synonyms
    return {
        "questions": len(texts),
        "without": without,
        "with": score(engine.predict_batch(texts), labels) if texts else None,
        "read_differently": sum(synonyms.read(t) != t for t in texts),
    }


def substituted(
    engine: AnsweringEngine, texts: list[str], labels: list[str]
) -> dict[str, tuple[list[str], list[str]]]:
    """Per other phrase of each group: the test questions holding the group's reading, asked with it."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for phrase, reading in sorted(engine.synonyms.reading.items()):
        pattern = whole(reading)
        rows = [(pattern.sub(phrase, t), y) for t, y in zip(texts, labels, strict=True) if pattern.search(t)]
        out[phrase] = ([t for t, _ in rows], [y for _, y in rows])
    return out


def main() -> None:
    args = split_arguments(__doc__).parse_args()
    engine, (texts, labels) = fitted_for_split(args)
    engine.update_synonyms(GROUPS)
    phrases = substituted(engine, texts, labels)
    result: dict[str, Any] = {
        "evaluation": split_name(args),
        "encoder": args.encoder,
        "seed": args.seed,
        "groups": GROUPS,
        "reading": engine.synonyms.reading,
        "phrases": {
            phrase: with_and_without(engine, asked, meant) | {"examples": asked[:3]}
            for phrase, (asked, meant) in phrases.items()
        },
    }
    every = (
        [t for asked, _ in phrases.values() for t in asked],
        [y for _, meant in phrases.values() for y in meant],
    )
    result["all_phrases"] = with_and_without(engine, *every)
    result["as_written"] = with_and_without(engine, texts, labels)
    print(f"synonyms ({result['evaluation']}, seed {args.seed}), without -> with them:")
    print(
        f"{'asked with':<18}{'reading':<15}{'questions':>10}{'accuracy':>18}{'answered right':>18}"
        f"{'declined':>16}"
    )
    rows = [(p, engine.synonyms.reading[p], f) for p, f in result["phrases"].items()]
    rows += [("(all phrases)", "", result["all_phrases"]), ("(as written)", "", result["as_written"])]
    for phrase, reading, figures in rows:
        if not figures["questions"]:
            print(f"{phrase:<18}{reading:<15}{0:>10}")
            continue
        cells = [
            f"{figures['without'][key] * 100:.1f} -> {figures['with'][key] * 100:.1f}"
            for key in ("accuracy", "answered_right", "declined")
        ]
        print(
            f"{phrase:<18}{reading:<15}{figures['questions']:>10}{cells[0]:>18}{cells[1]:>18}{cells[2]:>16}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "synonyms" + ("_validation" if args.validation else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
