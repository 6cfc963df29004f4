"""Messages in another language than the knowledge base's: told apart from English, and what the bot does.

A bank's bot with an English knowledge base gets "Wo ist meine Karte?". It declines such a message as off its
topic; bot.language tells the customer it answers in English (in their language too, where HelpLoop has the
line) instead of "I don't have an answer to that". The identifier (py3langid, restricted to
bot.language.LANGUAGES) must never take an English question for another language.

- Other languages: ``bench/data/other_languages.csv``, customer questions about cards and payments written
  by hand in two sets: ``first`` (56, seven languages; the restriction and the threshold were chosen on them)
  and ``second`` (31, twelve languages, five not in the first; written after the choice, only measured).
  Per set and threshold: how many are taken for another language, and for the right one.
- English: every question of BANKING77's training and test splits, and the English messages of bench/data
  (off topic, contrasts, follow-ups, replies): how many are taken for another language at each threshold.
- The same with all 97 of the identifier's languages (``all``), to show why the candidates are restricted.
- What the engine does with the other-language questions (``--engine``, default on: fitted on BANKING77 train
  as `helploop build` fits it, frozen default encoder, seed 0): answered, "did you mean", handed over or
  declined as off topic; only the declined ones are read for their language.

    .venv/bin/python bench/other_languages.py [--data DIR] [--out DIR] [--no-engine] [--encoder NAME]

Writes bench/results/other_languages.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_training import DEFAULT_DATA  # noqa: E402

from bot.encoders import DEFAULT_ENCODER  # noqa: E402
from bot.language import LANGUAGES, THRESHOLD, load_identifier  # noqa: E402

DATA = ROOT / "bench" / "data"
THRESHOLDS = (0.5, 0.6, THRESHOLD, 0.8, 0.9)


def read_other_languages(path: Path = DATA / "other_languages.csv") -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def english_messages(data: Path) -> dict[str, list[str]]:
    """English messages by source: BANKING77's questions and the English texts of bench/data."""
    sources: dict[str, list[str]] = {}
    for split in ("train", "test"):
        with (data / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
            sources[f"banking77 {split}"] = [row["text"] for row in csv.DictReader(handle)]
    columns = {
        "off_topic.csv": ["text"],
        "contrast.csv": ["text"],
        "follow_ups.csv": ["first", "follow_up"],
        "replies.csv": ["message"],
    }
    for name, keys in columns.items():
        with (DATA / name).open(newline="", encoding="utf-8") as handle:
            sources[name] = [row[key] for row in csv.DictReader(handle) for key in keys if row[key].strip()]
    return sources


def read(ident: Any, texts: list[str]) -> list[tuple[str, float]]:
    return [(str(lang), float(p)) for lang, p in (ident.classify(t) for t in texts)]


def counts(
    others: list[dict[str, str]], other_reads: list[tuple[str, float]], english_reads: list[tuple[str, float]]
) -> dict[str, Any]:
    """Per threshold: other-language questions flagged (and with the right language) per set; English
    messages flagged."""
    out: dict[str, Any] = {}
    for threshold in THRESHOLDS:
        row: dict[str, Any] = {}
        for name in sorted({o["set"] for o in others}):
            pairs = [(o, r) for o, r in zip(others, other_reads, strict=True) if o["set"] == name]
            row[name] = {
                "questions": len(pairs),
                "flagged": sum(lang != "en" and p >= threshold for _, (lang, p) in pairs),
                "right_language": sum(lang == o["language"] and p >= threshold for o, (lang, p) in pairs),
            }
        row["english_flagged"] = sum(lang != "en" and p >= threshold for lang, p in english_reads)
        out[f"{threshold:g}"] = row
    return out


def engine_statuses(others: list[dict[str, str]], data: Path, encoder: str) -> dict[str, Any]:
    """What the engine (fitted on BANKING77 train as `helploop build` fits it) does with each question."""
    from bot.encoders import SentenceTransformerEncoder
    from bot.engine import AnsweringEngine, EngineConfig
    from bot.language import other_language
    from core.kb_files import read_labelled_csv

    texts, labels = read_labelled_csv(data / "train.csv")
    engine = AnsweringEngine(EngineConfig(seed=0), encoders={"minilm": SentenceTransformerEncoder(encoder)})
    started = time.perf_counter()
    engine.fit(texts, labels, progress=True)
    fit_seconds = time.perf_counter() - started
    predictions = engine.predict_batch([o["text"] for o in others])
    statuses = Counter("off_topic" if p.off_topic else p.status for p in predictions)
    declined = [(o, p) for o, p in zip(others, predictions, strict=True) if p.off_topic]
    return {
        "fit_seconds": round(fit_seconds, 1),
        "statuses": dict(sorted(statuses.items())),
        "declined_told_their_language": sum(
            other_language(o["text"], "en") == o["language"] for o, _ in declined
        ),
        "answered": [
            {"text": o["text"], "intent": p.intent}
            for o, p in zip(others, predictions, strict=True)
            if p.status == "answered"
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--no-engine", dest="engine", action="store_false")
    args = parser.parse_args()
    others = read_other_languages()
    sources = english_messages(args.data)
    english = [t for texts in sources.values() for t in texts]
    result: dict[str, Any] = {
        "other_language_questions": dict(Counter(o["set"] for o in others)),
        "english_messages": {name: len(texts) for name, texts in sources.items()},
        "threshold": THRESHOLD,
        "languages": LANGUAGES,
    }
    for name, restricted in (("restricted", True), ("all", False)):
        ident = load_identifier(LANGUAGES if restricted else None)  # the product's, or all 97
        started = time.perf_counter()
        english_reads = read(ident, english)
        per_message_ms = (time.perf_counter() - started) * 1000 / len(english)
        other_reads = read(ident, [o["text"] for o in others])
        top = max((p for lang, p in english_reads if lang != "en"), default=0.0)
        result[name] = {
            "by_threshold": counts(others, other_reads, english_reads),
            "highest_other_language_probability_of_an_english_message": round(top, 4),
            "lowest_probability_of_an_other_language_question": {
                s: round(min(p for o, (_, p) in zip(others, other_reads, strict=True) if o["set"] == s), 4)
                for s in sorted({o["set"] for o in others})
            },
            "ms_per_message": round(per_message_ms, 4),
        }
        print(
            f"\n{name} languages ({len(LANGUAGES) if restricted else 'all 97'}): "
            f"{per_message_ms:.3f} ms a message"
        )
        print(
            f"{'threshold':>10}{'first: flagged':>16}{'right':>7}{'second: flagged':>17}{'right':>7}"
            f"{'English flagged':>17}"
        )
        for threshold, row in result[name]["by_threshold"].items():
            first, second = row["first"], row["second"]
            print(
                f"{threshold:>10}{first['flagged']:>11}/{first['questions']:<4}{first['right_language']:>7}"
                f"{second['flagged']:>12}/{second['questions']:<4}{second['right_language']:>7}"
                f"{row['english_flagged']:>11}/{len(english)}"
            )
    if args.engine:
        result["engine"] = engine_statuses(others, args.data, args.encoder)
        print(f"\nthe engine on the {len(others)} other-language questions: {result['engine']['statuses']}")
        print(f"declined and told their language: {result['engine']['declined_told_their_language']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "other_languages.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
