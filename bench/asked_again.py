"""The same answer asked for again: how often a customer who asks again gets the answer just given.

The engine is fitted on the BANKING77 training split (frozen default encoder, as `helploop build`; with
``--shots N``, N questions per intent, drawn with the seed). Customers are simulated from the test split:

- **After a wrong answer.** Every test question the engine answers with a wrong intent is followed by the
  customer asking again in other words: another test question of the intent they meant (drawn with the
  seed), read as the chat reads it (``read_follow_up`` after the question before). When that reply gives the
  same wrong answer again, the customer asks a third time (a third question of the intent). Before
  ``bot.repetition`` the bot sent the same wrong answer again each time; now the second copy carries the
  offer of a person (``HELPLOOP_ASKED_AGAIN_MESSAGE`` and the button) and the third is a handoff.
- **After a right answer.** The same for every test question answered rightly (a customer who asks again
  though answered: the same answer is right again, and now comes with the offer of a person).
- **Follow-ups about the same thing** (``bench/data/follow_ups*.csv``, kind ``same_topic``: "it's been three
  weeks" after "my card still hasn't arrived"): how many are answered with the first question's intent
  again, i.e. carry the offer now.

    .venv/bin/python bench/asked_again.py [--data DIR] [--shots N] [--seed 0] [--out DIR]

Writes bench/results/asked_again[_N-shot].json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.follow_ups import SETS, read_conversations  # noqa: E402
from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import ANSWERED, AnsweringEngine, EngineConfig, Prediction  # noqa: E402
from bot.evaluation import sample_shots  # noqa: E402
from bot.follow_up import Earlier, read_follow_up  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
# What the customer's next question gets, against the answer just given.
AGAIN = ("same_answer", "right", "other_wrong", "no_answer")


def reply_kind(prediction: Prediction, given: str, meant: str) -> str:
    if prediction.status != ANSWERED:
        return "no_answer"  # "did you mean", a handoff or the off-topic line: no answer to repeat
    if prediction.intent == given:
        return "same_answer"
    return "right" if prediction.intent == meant else "other_wrong"


def asked_again(engine: AnsweringEngine, texts: list[str], labels: list[str], seed: int) -> dict[str, Any]:
    """Every test question answered, followed by the customer asking again (twice when the same answer comes
    back) with other test questions of the intent they meant."""
    rng = random.Random(seed)
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_intent[label].append(i)
    firsts = engine.predict_batch(texts)
    result: dict[str, Any] = {}
    for case in ("wrong", "right"):
        second: Counter[str] = Counter()
        third: Counter[str] = Counter()
        customers = 0
        for i, first in enumerate(firsts):
            if first.status != ANSWERED or (first.intent == labels[i]) != (case == "right"):
                continue
            others = [j for j in by_intent[labels[i]] if j != i]
            if len(others) < 2:
                continue
            customers += 1
            j, k = rng.sample(others, 2)
            given = str(first.intent)
            reply = read_follow_up(engine, texts[j], earlier=Earlier(texts[i], given)).prediction
            kind = reply_kind(reply, given, labels[i])
            second[kind] += 1
            if kind == "same_answer":
                again = read_follow_up(engine, texts[k], earlier=Earlier(texts[j], given)).prediction
                third[reply_kind(again, given, labels[i])] += 1
        result[case] = {
            "customers": customers,
            "second_reply": {name: second[name] for name in AGAIN},
            "third_reply_after_the_same_answer": {name: third[name] for name in AGAIN},
        }
    return result


def same_topic_follow_ups(engine: AnsweringEngine) -> dict[str, int]:
    rows = [r for path in SETS.values() for r in read_conversations(path) if r["kind"] == "same_topic"]
    repeated = answered_first = 0
    for row in rows:
        first = engine.predict(row["first"])
        if first.status != ANSWERED:
            continue
        answered_first += 1
        reply = read_follow_up(
            engine, row["follow_up"], earlier=Earlier(row["first"], first.intent)
        ).prediction
        repeated += reply.status == ANSWERED and reply.intent == first.intent
    return {"conversations": len(rows), "first_answered": answered_first, "same_answer_again": repeated}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--shots", type=int, default=None, help="N questions per intent (default: all)")
    parser.add_argument("--seed", type=int, default=0)
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
    results: dict[str, Any] = {"training_questions": len(train[0]), "shots": args.shots, "seed": args.seed}
    results["test"] = figures = asked_again(engine, texts, labels, args.seed)
    print(
        f"\nBANKING77 test ({len(texts)} questions): the customer asks again, with another question of "
        "the intent meant"
    )
    print(f"{'first answer':<14}{'customers':>10}{'reply':<8}" + "".join(f"{name:>14}" for name in AGAIN))
    for case, row in figures.items():
        for label, key in (("second", "second_reply"), ("third", "third_reply_after_the_same_answer")):
            counts = row[key]
            total = sum(counts.values()) or 1
            print(
                f"{case:<14}{row['customers']:>10}  {label:<6}"
                + "".join(f"{counts[name]:>6} {counts[name] / total:>6.1%}" for name in AGAIN)
            )
    results["same_topic_follow_ups"] = same = same_topic_follow_ups(engine)
    print(
        f"\nsame-topic follow-ups: {same['same_answer_again']} of {same['first_answered']} answered first "
        f"({same['conversations']} conversations) get the same answer again, now with the offer of a person"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / (f"asked_again_{args.shots}-shot.json" if args.shots else "asked_again.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
