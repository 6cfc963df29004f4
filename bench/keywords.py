"""Keyword messages ("pin", "top up"): answered as the models read them, or asked about (``bot.keywords``).

The engine is fitted on the BANKING77 training split as `helploop build` fits it (frozen default encoder, the
product's gate). Scored, with the keyword check at each ``--shares`` value and without it:

- Keyword versions of the evaluation questions: one or two neighbouring topic words of each question (words
  that are not ``bot.keywords.STRUCTURE`` or ``FILLER``, of three letters or more; one or two drawn with
  ``--seed``), labelled with the question's intent. No one can tell which intent "card" was meant for, so
  what counts is how many are answered wrong, and how many have the right intent one click away (the answer,
  or among the "did you mean" choices).
- The evaluation questions as written: the check only reads keyword messages, so few change; how many right
  answers become "did you mean", and how many wrong ones.

``--validation``: the evaluation split is 3,000 rows held out of train (the engine fitted on the rest),
where the share was chosen; otherwise the BANKING77 test split (measured only).

    .venv/bin/python bench/keywords.py [--validation] [--seed 0] [--shares 0.3 0.5 0.7] [--data DIR]

Writes bench/results/keywords[_validation].json.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_training import fitted_for_split, reply_figures, split_arguments, split_name  # noqa: E402

from bot.engine import AnsweringEngine, EngineConfig, Prediction  # noqa: E402
from bot.keywords import FILLER, STRUCTURE, keywords_of  # noqa: E402
from bot.spelling import words_of  # noqa: E402


def keyword_version(text: str, rng: random.Random) -> str | None:
    """One or two neighbouring topic words of ``text`` ("card", "exchange rate"); None when it has none."""
    topic = [w for w in words_of(text) if w not in STRUCTURE and w not in FILLER and len(w) >= 3]
    if not topic:
        return None
    size = rng.choice((1, 2)) if len(topic) > 1 else 1
    start = rng.randrange(len(topic) - size + 1)
    return " ".join(topic[start : start + size])


def score(predictions: list[Prediction], labels: list[str]) -> dict[str, int]:
    return reply_figures(predictions, labels) | {"vague": sum(p.vague for p in predictions)}


def sweep(
    engine: AnsweringEngine, texts: list[str], labels: list[str], shares: list[float]
) -> dict[str, dict[str, int]]:
    """``texts`` scored without the keyword check and at each share."""
    index = engine.keywords
    assert index is not None
    out: dict[str, dict[str, int]] = {}
    engine.keywords = None
    out["none"] = score(engine.predict_batch(texts), labels)
    engine.keywords = index
    kept = index.min_share
    for share in shares:
        index.min_share = share
        out[f"{share:g}"] = score(engine.predict_batch(texts), labels)
    index.min_share = kept
    return out


def main() -> None:
    parser = split_arguments(__doc__)
    parser.add_argument("--shares", type=float, nargs="+", default=[EngineConfig().keyword_share or 0.7])
    args = parser.parse_args()
    if any(not 0 < s <= 1 for s in args.shares):
        parser.error("--shares take values above 0, up to 1")
    engine, evaluation = fitted_for_split(args)
    texts, labels = evaluation
    rng = random.Random(args.seed)
    pairs = [(keyword_version(t, rng), y) for t, y in zip(texts, labels, strict=True)]
    keyword_texts = [k for k, _ in pairs if k is not None]
    keyword_labels = [y for k, y in pairs if k is not None]
    result: dict[str, Any] = {
        "evaluation": split_name(args),
        "encoder": args.encoder,
        "seed": args.seed,
        "examples": keyword_texts[:10],
        "keyword_messages_among_questions": sum(keywords_of(t) is not None for t in texts),
        "keywords": sweep(engine, keyword_texts, keyword_labels, args.shares),
        "questions": sweep(engine, texts, labels, args.shares),
    }
    for name in ("keywords", "questions"):
        print(f"{name} ({result['evaluation']}, seed {args.seed}):")
        print(f"{'share':>8}{'right':>8}{'wrong':>8}{'asked':>8}{'one click':>11}{'vague':>8}")
        for share, f in result[name].items():
            print(
                f"{share:>8}{f['answered_right']:>8}{f['answered_wrong']:>8}{f['asked']:>8}"
                f"{f['reachable']:>11}{f['vague']:>8}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "keywords" + ("_validation" if args.validation else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
