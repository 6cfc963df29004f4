"""Small talk around a question: what a greeting and a thanks cost the model, and what leaving them out wins.

The engine is fitted on the BANKING77 training split (frozen default encoder, as `helploop build`) and reads
every test question four ways: as written, "Hi, " before it, "Hello! " before and " Thanks!" after it, and
"hi " before it without punctuation; each as typed and through bot.small_talk.without_small_talk (what the
web app and the terminal chat pass to the model). Per variant: top-1 accuracy, the share answered (not
"did you mean", not handed off) and the precision of those answers. Also counts the test questions that are
small talk as a whole (must be none) and those the stripping changes.

"That's wrong" after a wrong answer: of the test questions answered with the wrong intent, the share whose
right intent is among the three chips the reply offers (the intents the model ranked next, as the web app
offers them), and at which place.

    .venv/bin/python bench/small_talk.py [--data DIR] [--out DIR]

Writes bench/results/small_talk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import ANSWERED, MAX_CLARIFY_CHOICES, AnsweringEngine, EngineConfig, Prediction  # noqa: E402
from bot.message_rules import choices_after_wrong  # noqa: E402
from bot.small_talk import small_talk_kind, without_small_talk  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
VARIANTS: dict[str, Callable[[str], str]] = {
    "as written": lambda t: t,
    "Hi, ...": lambda t: f"Hi, {t}",
    "Hello! ... Thanks!": lambda t: f"Hello! {t} Thanks!",
    "hi ... (no comma)": lambda t: f"hi {t}",
}


def scores(predictions: list[Prediction], labels: list[str]) -> dict[str, float]:
    answered = [
        (p.intent, label) for p, label in zip(predictions, labels, strict=True) if p.status == ANSWERED
    ]
    return {
        "accuracy": float(np.mean([p.top_intent == y for p, y in zip(predictions, labels, strict=True)])),
        "answered": len(answered) / len(labels),
        "answered_precision": float(np.mean([a == b for a, b in answered])) if answered else float("nan"),
    }


def after_a_wrong_answer(predictions: list[Prediction], labels: list[str]) -> dict[str, Any]:
    """Answered with the wrong intent, then "that's wrong": is the right intent among the chips offered?"""
    wrong = [
        (p, y) for p, y in zip(predictions, labels, strict=True) if p.status == ANSWERED and p.intent != y
    ]
    places = [0] * MAX_CLARIFY_CHOICES
    for prediction, label in wrong:
        offered = choices_after_wrong([c.intent for c in prediction.ranking], prediction.intent)
        if label in offered:
            places[offered.index(label)] += 1
    return {
        "wrong_answers": len(wrong),
        "wrong_answers_share": len(wrong) / len(labels),
        "right_intent_offered": sum(places) / len(wrong) if wrong else float("nan"),
        "offered_at_place": places,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    train = read_labelled_csv(args.data / "train.csv")
    texts, labels = read_labelled_csv(args.data / "test.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(threads=2))
    started = time.perf_counter()
    engine = AnsweringEngine(EngineConfig(), encoders={"minilm": encoder}).fit(*train, progress=True)
    print(f"fitted on {len(train[0])} training questions in {time.perf_counter() - started:.0f}s", flush=True)
    results: dict[str, Any] = {
        "test_questions": len(texts),
        "small_talk_as_a_whole": sum(small_talk_kind(t) is not None for t in texts),
        "changed_by_stripping": sum(without_small_talk(t) != t for t in texts),
        "variants": {},
    }
    print(f"\n{'variant':<22}{'model reads':<14}{'accuracy':>10}{'answered':>10}{'precision':>11}")
    for name, wrap in VARIANTS.items():
        wrapped = [wrap(t) for t in texts]
        row = {}
        for reads, inputs in (("as typed", wrapped), ("stripped", [without_small_talk(t) for t in wrapped])):
            predictions = engine.predict_batch(inputs)
            if (name, reads) == ("as written", "as typed"):
                as_written = predictions  # also what "that's wrong" is measured on
            row[reads] = figures = scores(predictions, labels)
            print(
                f"{name:<22}{reads:<14}{figures['accuracy']:>10.4f}{figures['answered']:>10.4f}"
                f"{figures['answered_precision']:>11.4f}",
                flush=True,
            )
        results["variants"][name] = row
    print(
        f"\ntest questions that are small talk as a whole: {results['small_talk_as_a_whole']} (must be 0); "
        f"changed by stripping: {results['changed_by_stripping']}"
    )
    results["that_is_wrong"] = complaint = after_a_wrong_answer(as_written, labels)
    print(
        f"answered with the wrong intent: {complaint['wrong_answers']} "
        f'({complaint["wrong_answers_share"]:.2%} of the test questions); after "that\'s wrong" the right '
        f"intent is among the 3 chips offered for {complaint['right_intent_offered']:.2%} of them "
        f"(1st / 2nd / 3rd chip: {' / '.join(map(str, complaint['offered_at_place']))})"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "small_talk.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out / 'small_talk.json'}")


if __name__ == "__main__":
    main()
