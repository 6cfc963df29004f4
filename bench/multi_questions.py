"""Two questions in one message: what reading it sentence by sentence (``bot.multi_question``) wins and costs.

The engine is fitted on the BANKING77 training split as `helploop build` fits it (frozen default encoder, the
product's gate). Scored:

- Pairs: two questions of different intents from the evaluation split joined into one message ("My card
  hasn't arrived. How do I activate it?"; a closing "." or "?" added to the first where it has none), and
  joined by a word as customers chain them ("how do I change my pin and also what's the fee?": the pairs
  whose second question starts with a question word, the connector drawn per pair from ``CONNECTORS``). Read
  whole, the bot answers one of them at best; how many pairs have *both* intents one click away (the answer
  and a chip: the intent's own follow-ups before, and the other questions' chips now), and how many of
  the extra chips were one of the two (right) or neither (wrong).
- Single questions (the evaluation split as it is): the answers are unchanged by construction (checked);
  how many answered questions of several sentences get extra chips, and how many.
- Time: the median milliseconds a two-question message takes, read whole and with its parts (the encoder
  uncached, as served), over ``--timed`` pairs.

``--validation``: the evaluation split is 3,000 rows held out of train (the engine fitted on the rest),
where the rule was chosen; otherwise the BANKING77 test split (measured only).

    .venv/bin/python bench/multi_questions.py [--validation] [--pairs 500] [--seed 0] [--data DIR]

Writes bench/results/multi_questions[_validation].json.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_training import fitted_for_split, split_arguments, split_name  # noqa: E402

from bot.encoders import CachingEncoder  # noqa: E402
from bot.engine import ANSWERED, CLARIFY, HANDOFF, AnsweringEngine, Prediction  # noqa: E402
from bot.multi_question import QUESTION_WORD, other_questions, question_parts  # noqa: E402

ASKS = re.compile(rf"{QUESTION_WORD}\b", re.IGNORECASE)


def joined(first: str, second: str) -> str:
    """Two questions as one message: the first closed with "?" (a question) or "." where it is not."""
    first = first.strip()
    if first[-1] not in ".?!":
        first += "?" if ASKS.match(first) else "."
    return f"{first} {second.strip()}"


CONNECTORS = (" and ", " and also ", ", also ", " plus ", " and then ")


def connected(first: str, second: str, connector: str) -> str:
    """Two questions as one sentence: the first's closing mark dropped, ``connector``, the second."""
    second = second.strip()
    return f"{first.strip().rstrip('.?!')}{connector}{second[:1].lower()}{second[1:]}"


def connected_pairs(texts: list[str], pairs: list[tuple[int, int]], seed: int) -> list[tuple[str, int, int]]:
    """The pairs whose second question starts with a question word, joined by a connector drawn with
    ``seed``: (message, first, second)."""
    rng = random.Random(seed)
    return [
        (connected(texts[a], texts[b], rng.choice(CONNECTORS)), a, b)
        for a, b in pairs
        if ASKS.match(texts[b].strip())
    ]


def draw_pairs(labels: list[str], count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` pairs of row indices of different intents, drawn with ``seed``."""
    rng = random.Random(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        a, b = rng.sample(range(len(labels)), 2)
        if labels[a] != labels[b]:
            pairs.append((a, b))
    return pairs


def score_pairs(
    engine: AnsweringEngine,
    texts: list[str],
    labels: list[str],
    pairs: list[tuple[int, int]],
    messages: list[str] | None = None,
) -> dict[str, Any]:
    """``messages``: the pairs as one message each (default: ``joined``)."""
    if messages is None:
        messages = [joined(texts[a], texts[b]) for a, b in pairs]
    whole = engine.predict_batch(messages)
    figures: dict[str, Any] = {
        "pairs": len(pairs),
        "statuses": {s: sum(p.status == s for p in whole) for s in (ANSWERED, CLARIFY, HANDOFF)},
        "one_answered_right": 0,
        "both_reachable_before": 0,
        "both_reachable": 0,
        "extra_chips_right": 0,
        "extra_chips_wrong": 0,
        "split": sum(bool(question_parts(m)) for m in messages),
    }
    for (a, b), prediction in zip(pairs, whole, strict=True):
        if prediction.status != ANSWERED:
            continue
        wanted = {labels[a], labels[b]}
        before = {prediction.intent} | {c.intent for c in prediction.suggestions}
        extra = other_questions(engine, prediction)
        figures["one_answered_right"] += prediction.intent in wanted
        figures["both_reachable_before"] += wanted <= before
        figures["both_reachable"] += wanted <= before | set(extra)
        figures["extra_chips_right"] += sum(name in wanted for name in extra)
        figures["extra_chips_wrong"] += sum(name not in wanted for name in extra)
    return figures


def score_singles(engine: AnsweringEngine, texts: list[str], labels: list[str]) -> dict[str, Any]:
    predictions = engine.predict_batch(texts)
    answered = [p for p in predictions if p.status == ANSWERED]
    several = [p for p in answered if question_parts(p.text)]
    extras = [other_questions(engine, p) for p in several]
    return {
        "questions": len(texts),
        "accuracy": sum(p.top_intent == y for p, y in zip(predictions, labels, strict=True)) / len(texts),
        "answered": len(answered) / len(texts),
        "answered_of_several_sentences": len(several),
        "with_extra_chips": sum(bool(e) for e in extras),
        "extra_chips": sum(len(e) for e in extras),
    }


def timed(engine: AnsweringEngine, messages: list[str]) -> dict[str, float]:
    """Median ms a message, read whole and then with its parts, the encoder uncached."""
    whole: list[float] = []
    with_parts: list[float] = []
    for message in messages:
        started = time.perf_counter()
        prediction: Prediction = engine.predict(message)
        whole.append((time.perf_counter() - started) * 1000)
        other_questions(engine, prediction)
        with_parts.append((time.perf_counter() - started) * 1000)
    return {"whole_ms": statistics.median(whole), "with_parts_ms": statistics.median(with_parts)}


def main() -> None:
    parser = split_arguments(__doc__)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--timed", type=int, default=100)
    args = parser.parse_args()
    if args.pairs < 1 or args.timed < 0:
        parser.error("--pairs takes 1 or more, --timed 0 or more")
    engine, evaluation = fitted_for_split(args)
    texts, labels = evaluation
    pairs = draw_pairs(labels, args.pairs, args.seed)
    chained = connected_pairs(texts, pairs, args.seed)
    result: dict[str, Any] = {
        "evaluation": split_name(args),
        "encoder": args.encoder,
        "seed": args.seed,
        "two_questions": score_pairs(engine, texts, labels, pairs),
        "joined_by_a_word": score_pairs(
            engine, texts, labels, [(a, b) for _, a, b in chained], [m for m, _, _ in chained]
        ),
        "single_questions": score_singles(engine, texts, labels),
    }
    if args.timed:
        cached = engine.encoders["minilm"]
        assert isinstance(cached, CachingEncoder)
        engine.encoders["minilm"] = cached.inner  # uncached, as served: no text is encoded from a cache
        result["time"] = timed(engine, [joined(texts[a], texts[b]) for a, b in pairs[: args.timed]])
    pairs_figures, singles = result["two_questions"], result["single_questions"]
    answered = pairs_figures["statuses"][ANSWERED]
    print(f"two questions in one message ({result['evaluation']}, {args.pairs} pairs, seed {args.seed}):")
    print(f"  answered {answered}, one of the two right {pairs_figures['one_answered_right']}")
    print(
        f"  both intents one click away: {pairs_figures['both_reachable_before']} before, "
        f"{pairs_figures['both_reachable']} read sentence by sentence"
    )
    print(
        f"  extra chips: {pairs_figures['extra_chips_right']} right, "
        f"{pairs_figures['extra_chips_wrong']} wrong"
    )
    words = result["joined_by_a_word"]
    print(
        f"joined by a word ({words['pairs']} pairs whose second question starts with a question word): "
        f"both one click away {words['both_reachable_before']} before, {words['both_reachable']} with the "
        f"parts; extra chips {words['extra_chips_right']} right, {words['extra_chips_wrong']} wrong"
    )
    print(
        f"single questions: accuracy {singles['accuracy'] * 100:.2f} % (unchanged), "
        f"{singles['answered_of_several_sentences']} answered of several sentences, "
        f"{singles['with_extra_chips']} of them with extra chips ({singles['extra_chips']} chips)"
    )
    if "time" in result:
        print(
            f"time a two-question message: {result['time']['whole_ms']:.1f} ms whole, "
            f"{result['time']['with_parts_ms']:.1f} ms with its parts"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "multi_questions" + ("_validation" if args.validation else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
