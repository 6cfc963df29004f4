"""Metadata filters on BANKING77: what answering from one product area's intents buys on its own page, and
what happens to a question asked on another product's page.

BANKING77's 77 intents are given a product area by their names (AREAS below: top-up, cash, transfers,
exchange, cards, and the account for the rest), as an operator would tag them. The engine is fitted on the
training split (frozen default encoder, as `helploop build`) and reads every test question three ways:

* without a filter;
* on its own area's page (the filter is the question's area): the confusions across areas are gone;
* on another area's page (the next area in AREAS): its right answer cannot be given, so every answer is a
  wrong one; the bot should hand over or ask "did you mean" instead. HelpLoop leaves the probability of
  the intents filtered out where it is (``AnsweringEngine.predict_batch(only=...)``); the column
  "renormalised" is the design it rejected, the filtered probabilities scaled back to sum to one.

Per way: top-1 accuracy, the share answered, the precision of those answers, and on the wrong page the share
answered (all wrong), clarified and handed over.

    .venv/bin/python bench/metadata_filter.py [--data DIR] [--out DIR]

Writes bench/results/metadata_filter.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import (  # noqa: E402
    ANSWERED,
    CLARIFY,
    HANDOFF,
    AnsweringEngine,
    EngineConfig,
    IntentInfo,
    MetadataFilter,
    Prediction,
)
from core.kb_files import read_labelled_csv  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
# The first area whose words appear in an intent's name is its area; "account" takes the rest.
AREAS: dict[str, tuple[str, ...]] = {
    "top_up": ("top_up", "topping_up"),
    "cash": ("cash", "atm"),
    "transfers": ("transfer", "receiving_money", "beneficiary", "direct_debit"),
    "exchange": ("exchange", "currency", "currencies"),
    "cards": ("card", "pin", "contactless", "apple_pay", "visa"),
    "account": (),
}


def area_of(intent: str) -> str:
    name = intent.lower()
    return next((area for area, words in AREAS.items() if any(w in name for w in words)), "account")


def other_area(area: str) -> str:
    names = list(AREAS)
    return names[(names.index(area) + 1) % len(names)]


def summarise(predictions: list[Prediction], labels: list[str]) -> dict[str, float]:
    answered = [(p.intent, y) for p, y in zip(predictions, labels, strict=True) if p.status == ANSWERED]
    statuses = Counter(p.status for p in predictions)
    return {
        "accuracy": float(np.mean([p.top_intent == y for p, y in zip(predictions, labels, strict=True)])),
        "answered": len(answered) / len(labels),
        "answered_precision": float(np.mean([a == b for a, b in answered])) if answered else float("nan"),
        "clarified": statuses[CLARIFY] / len(labels),
        "handed_over": statuses[HANDOFF] / len(labels),
    }


def renormalised(engine: AnsweringEngine, texts: list[str], only: MetadataFilter) -> list[Prediction]:
    """The rejected design, from the engine's own parts: the allowed intents' probabilities scaled to one."""
    probabilities, _, _ = engine.predict_proba(texts)
    allowed = engine.allowed(only)
    assert allowed is not None
    kept = probabilities * allowed
    kept /= np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)
    confidence = engine.calibrator(kept.max(axis=1))
    margins = engine._margins(kept, confidence)
    return [
        engine._decide(text, kept[i], float(confidence[i]), float(margins[i]), {}, 0.0, allowed)
        for i, text in enumerate(texts)
    ]


def by_area(
    engine: AnsweringEngine, texts: list[str], pages: list[str], *, rescale: bool = False
) -> list[Prediction]:
    """Each text read on the page of ``pages[i]``'s area (one batch per area), in the texts' order."""
    out: list[Prediction | None] = [None] * len(texts)
    for area in AREAS:
        rows = [i for i, page in enumerate(pages) if page == area]
        if not rows:
            continue
        only = MetadataFilter.of([("area", area)])
        batch = [texts[i] for i in rows]
        predictions = renormalised(engine, batch, only) if rescale else engine.predict_batch(batch, only=only)
        for i, prediction in zip(rows, predictions, strict=True):
            out[i] = prediction
    assert all(p is not None for p in out)
    return [p for p in out if p is not None]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    train = read_labelled_csv(args.data / "train.csv")
    texts, labels = read_labelled_csv(args.data / "test.csv")
    intents = sorted(set(train[1]))
    areas = {intent: area_of(intent) for intent in intents}
    sizes = Counter(areas.values())
    print("intents per area: " + ", ".join(f"{a} {sizes[a]}" for a in AREAS))
    knowledge = {i: IntentInfo(answer=f"About {i}.", metadata={"area": areas[i]}) for i in intents}
    encoder = CachingEncoder(SentenceTransformerEncoder(threads=2))
    started = time.perf_counter()
    engine = AnsweringEngine(EngineConfig(), encoders={"minilm": encoder})
    engine.fit(*train, knowledge=knowledge, progress=True)
    print(f"fitted on {len(train[0])} training questions in {time.perf_counter() - started:.0f}s", flush=True)
    own = [areas[y] for y in labels]
    wrong = [other_area(a) for a in own]
    ways = {
        "no filter": engine.predict_batch(texts),
        "own area's page": by_area(engine, texts, own),
        "another area's page": by_area(engine, texts, wrong),
        "another area's page, renormalised": by_area(engine, texts, wrong, rescale=True),
    }
    results: dict[str, Any] = {
        "test_questions": len(texts),
        "areas": {a: sizes[a] for a in AREAS},
        "intent_areas": areas,
        "ways": {},
    }
    print(
        f"\n{'read':<36}{'accuracy':>9}{'answered':>10}{'precision':>11}{'clarified':>11}{'handed over':>13}"
    )
    for name, predictions in ways.items():
        results["ways"][name] = row = summarise(predictions, labels)
        print(
            f"{name:<36}{row['accuracy']:>9.4f}{row['answered']:>10.4f}{row['answered_precision']:>11.4f}"
            f"{row['clarified']:>11.4f}{row['handed_over']:>13.4f}",
            flush=True,
        )
    unfiltered = ways["no filter"]
    crossing = sum(
        p.status == ANSWERED and areas.get(str(p.intent)) != a for p, a in zip(unfiltered, own, strict=True)
    )
    results["unfiltered_answers_from_another_area"] = crossing
    kept = results["ways"]["another area's page"]["answered"]
    rescaled = results["ways"]["another area's page, renormalised"]["answered"]
    print(
        f"\nwithout a filter, {crossing} answers ({crossing / len(texts):.2%} of the test questions) came "
        f"from another area's intent; on a wrong page every answer is wrong: {kept:.2%} answered as HelpLoop "
        f"filters, {rescaled:.2%} renormalised"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metadata_filter.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out / 'metadata_filter.json'}")


if __name__ == "__main__":
    main()
