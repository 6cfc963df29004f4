"""Misspelt questions: what reading misspelt words as the knowledge base's own (``bot.spelling``) wins
and costs.

The engine is fitted on the BANKING77 training split as `helploop build` fits it (frozen default encoder, the
product's gate). The evaluation questions are scored three ways, each with and without the corrector:

- as written (BANKING77's customers' own spelling, typos included): what correcting costs where little is
  wrong;
- with one typo: one word of four or more letters in each question mistyped once (a letter dropped, doubled,
  swapped with the next, or a neighbouring key on a QWERTY keyboard; an apostrophe dropped);
- with typos in 20 % of the words of three or more letters (fast typing on a phone).

Per reading: accuracy of the top intent, the share answered and the precision of those answers, the share
declined as off topic, and how many questions the corrector changed. Typos are drawn with ``--seed``.

``--validation``: the evaluation split is 3,000 rows held out of train (the engine fitted on the rest),
where the corrector's settings were chosen; otherwise the BANKING77 test split (measured only).

    .venv/bin/python bench/typos.py [--validation] [--seed 0] [--data DIR]

Writes bench/results/typos[_validation].json.
"""

from __future__ import annotations

import json
import os
import random
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

from bot.engine import ANSWERED, AnsweringEngine, Prediction  # noqa: E402
from bot.spelling import WORD, SpellingCorrector, neighbours  # noqa: E402


def mistype(word: str, rng: random.Random) -> str:
    """``word`` with one typo; the first letter kept (people rarely get it wrong)."""
    if "'" in word and rng.random() < 0.5:
        return word.replace("'", "", 1)
    i = rng.randrange(1, len(word))
    kind = rng.choice(("drop", "double", "swap", "key"))
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap" and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    near = neighbours(word[i].lower())
    return word[:i] + rng.choice(near) + word[i + 1 :] if near else word[:i] + word[i + 1 :]


def with_typos(text: str, rng: random.Random, *, share: float | None) -> str:
    """``text`` with one word of 4+ letters mistyped (``share`` None), or each word of 3+ letters mistyped
    with probability ``share``."""
    spans = [m.span() for m in WORD.finditer(text)]
    if share is None:
        chosen = [s for s in spans if s[1] - s[0] >= 4]
        picked = {rng.choice(chosen)} if chosen else set()
    else:
        picked = {s for s in spans if s[1] - s[0] >= 3 and rng.random() < share}
    out, last = [], 0
    for start, end in spans:
        if (start, end) in picked:
            out.append(text[last:start] + mistype(text[start:end], rng))
            last = end
    return "".join(out) + text[last:]


def score(predictions: list[Prediction], labels: list[str]) -> dict[str, Any]:
    answered = [(p, y) for p, y in zip(predictions, labels, strict=True) if p.status == ANSWERED]
    n = len(labels)
    return {
        "accuracy": sum(p.top_intent == y for p, y in zip(predictions, labels, strict=True)) / n,
        "answered": len(answered) / n,
        "answered_precision": sum(p.intent == y for p, y in answered) / max(len(answered), 1),
        "declined": sum(p.off_topic for p in predictions) / n,
    }


def settings_of(corrector: SpellingCorrector | None) -> dict[str, Any] | None:
    """The corrector's settings and the size of its vocabularies (not the words themselves)."""
    if corrector is None:
        return None
    return corrector.to_dict() | {"counts": len(corrector.counts), "dictionary": len(corrector.dictionary)}


def read(engine: AnsweringEngine, texts: list[str], labels: list[str]) -> dict[str, Any]:
    """The questions read as written and with the corrector."""
    corrector = engine.spelling
    engine.spelling = None
    plain = score(engine.predict_batch(texts), labels)
    engine.spelling = corrector
    started = time.perf_counter()
    corrected = [corrector.correct(t) for t in texts] if corrector is not None else texts
    per_question_ms = (time.perf_counter() - started) * 1000 / max(len(texts), 1)
    return {
        "as_written": plain,
        "corrected": score(engine.predict_batch(texts), labels),
        "questions_changed": sum(a != b for a, b in zip(texts, corrected, strict=True)),
        "correct_ms_per_question": per_question_ms,
    }


def main() -> None:
    args = split_arguments(__doc__).parse_args()
    engine, evaluation = fitted_for_split(args)
    texts, labels = evaluation
    rng = random.Random(args.seed)
    readings = {
        "as written": texts,
        "one typo": [with_typos(t, rng, share=None) for t in texts],
        "20 % of words": [with_typos(t, rng, share=0.2) for t in texts],
    }
    result: dict[str, Any] = {
        "evaluation": split_name(args),
        "encoder": args.encoder,
        "seed": args.seed,
        "corrector": settings_of(engine.spelling),
        "examples": {name: rows[:5] for name, rows in readings.items()},
        "readings": {name: read(engine, rows, labels) for name, rows in readings.items()},
    }
    print(f"misspelt questions ({result['evaluation']}, seed {args.seed}), without -> with the corrector:")
    print(
        f"{'reading':<16}{'accuracy':>18}{'answered':>18}{'answered precision':>22}{'declined':>16}"
        f"{'changed':>9}"
    )
    for name, figures in result["readings"].items():
        cells = [
            f"{figures['as_written'][key] * 100:.2f} -> {figures['corrected'][key] * 100:.2f}"
            for key in ("accuracy", "answered", "answered_precision", "declined")
        ]
        print(
            f"{name:<16}{cells[0]:>18}{cells[1]:>18}{cells[2]:>22}{cells[3]:>16}"
            f"{figures['questions_changed']:>9}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "typos" + ("_validation" if args.validation else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
