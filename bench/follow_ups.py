"""Follow-up questions: what reading a message with the question before it (``bot.follow_up``) wins and costs.

The engine is fitted on the BANKING77 training split (frozen default encoder, as `helploop build`; with
``--shots N``, N questions per intent). Two-message conversations are replayed as the chat replays them: the
first question is answered on its own; the second is read alone (the bot before follow-ups) and as the chat
reads it now (``read_follow_up``: a short message that refers back is also read after the first question,
that question's answer left out, and the more confident reading wins).

- ``bench/data/follow_ups.csv`` (the set the rule was chosen on) and ``bench/data/follow_ups_holdout.csv``
  (written before the rule was coded, then only measured): hand-written follow-ups ("is there a charge for
  that?" after "can I top up with my card?") with the intent they ask for, follow-ups about the same thing as
  the first question ("it's been three weeks" after "my card still hasn't arrived"; 16 and 8, written before
  the rule for them was coded), changes of topic (a question that stands on its own after another),
  and messages that are no banking question ("tell me a joke"). Per kind:
  answered right, answered wrong, "did you mean" offering the right intent, and no answer (the right outcome
  for a message that is no question).
- What it costs on questions that stand on their own: every BANKING77 test question, preceded by a test
  question of another intent (drawn with the seed): accuracy, the share answered and their precision, the
  share read with the question before and the time a message takes (the encoder uncached, as served:
  a message that refers back is read twice).

    .venv/bin/python bench/follow_ups.py [--data DIR] [--shots N] [--seed 0] [--weight 0.6] [--out DIR]

Writes bench/results/follow_ups[_N-shot].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import ANSWERED, CLARIFY, AnsweringEngine, EngineConfig, Prediction  # noqa: E402
from bot.evaluation import sample_shots  # noqa: E402
from bot.follow_up import FOLLOW_UP_WEIGHT, Earlier, read_follow_up, refers_back  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
SETS = {
    "chosen on": ROOT / "bench" / "data" / "follow_ups.csv",
    "held out": ROOT / "bench" / "data" / "follow_ups_holdout.csv",
}
KINDS = ("follow_up", "same_topic", "new_topic", "not_a_question")
OUTCOMES = ("right", "wrong", "right_offered", "no_answer")


def intent_name(label: str | None) -> str | None:
    """BANKING77's ``reverted_card_payment?`` is the demo's ``reverted_card_payment`` (the sets' spelling)."""
    return label.rstrip("?") if label else label


def outcome(prediction: Prediction, expected: str) -> str:
    if prediction.status == ANSWERED:
        return "right" if intent_name(prediction.intent) == expected else "wrong"
    if prediction.status == CLARIFY and expected in {intent_name(c.intent) for c in prediction.suggestions}:
        return "right_offered"
    return "no_answer"


def read_conversations(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for line, row in enumerate(rows, start=2):
        if row["kind"] not in KINDS:
            raise SystemExit(f"{path}:{line}: kind must be one of {', '.join(KINDS)}, not {row['kind']!r}")
    return rows


def earlier_of(engine: AnsweringEngine, first: str) -> Earlier:
    """The first question as the chat keeps it: its text, and its intent when it was answered."""
    prediction = engine.predict(first)
    return Earlier(first, prediction.intent if prediction.status == ANSWERED else None)


def conversations(engine: AnsweringEngine, rows: list[dict[str, str]], weight: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind in KINDS:
        subset = [r for r in rows if r["kind"] == kind]
        counts: dict[str, Counter[str]] = {"alone": Counter(), "with follow-ups": Counter()}
        for row in subset:
            alone = engine.predict(row["follow_up"])
            reading = read_follow_up(
                engine, row["follow_up"], earlier=earlier_of(engine, row["first"]), weight=weight
            )
            counts["alone"][outcome(alone, row["intent"])] += 1
            counts["with follow-ups"][outcome(reading.prediction, row["intent"])] += 1
        result[kind] = {"conversations": len(subset)} | {
            way: {name: c[name] for name in OUTCOMES} for way, c in counts.items()
        }
    return result


def after_other_questions(
    engine: AnsweringEngine, texts: list[str], labels: list[str], seed: int, weight: float
) -> dict[str, Any]:
    """Every test question after a test question of another intent: alone, and read as the chat reads it."""
    rng = random.Random(seed)
    firsts = []
    for label in labels:
        while True:
            j = rng.randrange(len(texts))
            if labels[j] != label:
                firsts.append(j)
                break
    earlier_predictions = engine.predict_batch([texts[j] for j in firsts])
    figures: dict[str, Any] = {}
    for way in ("alone", "with follow-ups"):
        started = time.perf_counter()
        predictions: list[Prediction] = []
        in_context = 0
        for text, j, first in zip(texts, firsts, earlier_predictions, strict=True):
            if way == "alone":
                predictions.append(engine.predict(text))
                continue
            earlier = Earlier(texts[j], first.intent if first.status == ANSWERED else None)
            reading = read_follow_up(engine, text, earlier=earlier, weight=weight)
            in_context += reading.context is not None
            predictions.append(reading.prediction)
        elapsed = time.perf_counter() - started
        answered = [(p.intent, y) for p, y in zip(predictions, labels, strict=True) if p.status == ANSWERED]
        figures[way] = {
            "accuracy": sum(p.top_intent == y for p, y in zip(predictions, labels, strict=True))
            / len(labels),
            "answered": len(answered) / len(labels),
            "answered_precision": sum(a == b for a, b in answered) / len(answered) if answered else None,
            "read_with_the_question_before": in_context / len(labels),
            "ms_per_message": elapsed * 1000 / len(labels),
        }
    figures["refer_back"] = sum(refers_back(t) for t in texts) / len(texts)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--shots", type=int, default=None, help="N questions per intent (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weight", type=float, default=FOLLOW_UP_WEIGHT, help="the message's weight against the one before"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    train = read_labelled_csv(args.data / "train.csv")
    if args.shots:
        train = sample_shots(*train, args.shots, args.seed)
    texts, labels = read_labelled_csv(args.data / "test.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(threads=2))
    started = time.perf_counter()
    engine = AnsweringEngine(EngineConfig(), encoders={"minilm": encoder}).fit(*train, progress=True)
    print(f"fitted on {len(train[0])} training questions in {time.perf_counter() - started:.0f}s", flush=True)
    results: dict[str, Any] = {
        "training_questions": len(train[0]),
        "shots": args.shots,
        "seed": args.seed,
        "weight": args.weight,
    }
    print(f"\n{'set':<10}{'kind':<16}{'reading':<17}" + "".join(f"{o:>15}" for o in OUTCOMES))
    for name, path in SETS.items():
        results[name] = sets = conversations(engine, read_conversations(path), args.weight)
        for kind, row in sets.items():
            for way in ("alone", "with follow-ups"):
                print(
                    f"{name:<10}{kind:<16}{way:<17}"
                    + "".join(f"{row[way][o]:>10} / {row['conversations']:<2}" for o in OUTCOMES),
                    flush=True,
                )
    engine.encoders["minilm"] = encoder.inner  # timed as served: no text is encoded from a cache
    results["test_after_another_question"] = pairs = after_other_questions(
        engine, texts, labels, args.seed, args.weight
    )
    print(
        f"\nBANKING77 test ({len(texts)} questions), each after a question of another intent; "
        f"{pairs['refer_back']:.1%} of them refer back"
    )
    print(
        f"{'reading':<17}{'accuracy':>10}{'answered':>10}{'precision':>11}{'read w/ before':>16}{'ms/msg':>8}"
    )
    for way in ("alone", "with follow-ups"):
        row = pairs[way]
        print(
            f"{way:<17}{row['accuracy']:>10.4f}{row['answered']:>10.4f}{row['answered_precision']:>11.4f}"
            f"{row['read_with_the_question_before']:>16.4f}{row['ms_per_message']:>8.1f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / (f"follow_ups_{args.shots}-shot.json" if args.shots else "follow_ups.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
