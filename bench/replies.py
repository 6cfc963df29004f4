"""Replies to the bot: what customers type after an answer or after "did you mean", read by the chat's rules.

`bench/data/replies.csv` holds such messages with what each should be read as: a kind of small talk
(thanks, acknowledgement, goodbye, not_helpful, unclear), the n-th of the choices shown (``choice:N``),
``none_of_these``, or ``question`` (for the model). Two sets: ``first`` (42) was written after the rules of
bot/choice.py and the small-talk phrases of session 45 were coded and before any was read by them; the rules
were then widened on its misses, and ``second`` (32) was written after that and before any was read: each
set a held-out check of the rules as they stood when it was written. ``third`` (session 48, 36: emoji,
"ok", "yes" and "no") adds the bot's "Is there anything else I can help with?" as a place a message answers
(``anything_else``) and the labels ``go_ahead`` and ``which_one``. Each message is read as the web chat
reads it: after "did you mean" (the choices below), first as an answer to the choices
(bot.choice.read_choice), then as small talk (bot.small_talk); after an answer or "anything else?", as small
talk, a nod by what came before it (bot.small_talk.acknowledgement_reply). "Before"
reads the same messages with the small-talk rules of a git revision (default 3b3f8e0, before session 45)
and no typed choices. No model is involved.

The other way round: BANKING77's test questions (real questions, none an answer to a choice) typed right
after a "did you mean" with three of the demo knowledge base's titles, the question's own intent among them
or not (choices drawn at random, seed 0): how many bot.choice reads as a pick (answered as that choice
without asking the model), and how many of those picks are not the question's intent.

    .venv/bin/python bench/replies.py [--before REV] [--data DIR] [--out DIR]

Writes bench/results/replies.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.choice import NONE_OF_THESE, WHICH_ONE, read_choice  # noqa: E402
from bot.small_talk import (  # noqa: E402
    ACKNOWLEDGEMENT,
    AFTER_ANSWER,
    AFTER_ANYTHING_ELSE,
    acknowledgement_reply,
    read_small_talk,
)

DATA = ROOT / "bench" / "data" / "replies.csv"
# The "did you mean" the choices' rows answer (titles as the demo knowledge base has them).
SHOWN = [
    ("transfer_timing", "How long transfers take"),
    ("pending_transfer", "Pending transfer"),
    ("cancel_transfer", "Cancel a transfer"),
]


LABELS = {
    "thanks",
    "acknowledgement",
    "goodbye",
    "not_helpful",
    "unclear",
    "greeting",
    "go_ahead",
    WHICH_ONE,
    NONE_OF_THESE,
    "question",
} | {f"choice:{n}" for n in range(1, len(SHOWN) + 1)}


SETS = ("first", "second", "third")
# What the message answers: an answer, the "did you mean" choices, or the bot's "Is there anything else I can
# help with?" (the reply to a thanks or a nod).
AFTER = (AFTER_ANSWER, "choices", AFTER_ANYTHING_ELSE)


def read_rows(path: Path = DATA) -> list[dict[str, str]]:
    """The messages, each checked: ``after`` is answer or choices, ``expected`` one of LABELS."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for line, row in enumerate(rows, start=2):
        if row.get("set") not in SETS:
            raise ValueError(
                f"{path.name}, line {line}: set must be one of {list(SETS)}, not {row.get('set')!r}"
            )
        if row.get("after") not in AFTER:
            raise ValueError(
                f"{path.name}, line {line}: after must be one of {list(AFTER)}, not {row.get('after')!r}"
            )
        if row.get("expected") not in LABELS:
            raise ValueError(f"{path.name}, line {line}: expected must be one of {sorted(LABELS)}")
        if not (row.get("message") or "").strip():
            raise ValueError(f"{path.name}, line {line}: message is empty")
    return rows


def old_small_talk(revision: str) -> ModuleType:
    """bot/small_talk.py as it was at ``revision``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:bot/small_talk.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "small_talk_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("small_talk_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reader(small_talk: Callable[[str], Any], choices: bool) -> Callable[[str, str], str]:
    """How the chat reads a message after ``after`` (one of AFTER), as one of the expected labels.
    ``choices`` False: as before typed choices and the reading of a nod by what came before it."""

    def read(after: str, text: str) -> str:
        if choices and after == "choices":
            picked = read_choice(text, SHOWN)
            if picked in (NONE_OF_THESE, WHICH_ONE):
                return str(picked)
            if picked is not None:
                return f"choice:{[intent for intent, _ in SHOWN].index(picked) + 1}"
        kind = small_talk(text).kind
        if choices and kind == ACKNOWLEDGEMENT and after != "choices":  # "ok", "yes": by what came before
            kind = acknowledgement_reply(text, after)
        return str(kind) if kind is not None else "question"

    return read


DEMO_TITLES = ROOT / "serving" / "demo_data" / "answers.csv"
DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))


def questions_after_choices(data: Path, seed: int = 0) -> dict[str, Any]:
    """BANKING77 test questions typed after three random choices (with and without their own intent): how
    many bot.choice takes as a pick, and how many of those are the wrong intent."""
    with DEMO_TITLES.open(newline="", encoding="utf-8") as handle:
        titles = {row["label"]: row["title"] for row in csv.DictReader(handle)}
    with (data / "test.csv").open(newline="", encoding="utf-8") as handle:
        questions = [(row["text"], row["label"].rstrip("?")) for row in csv.DictReader(handle)]
    rng = random.Random(seed)
    intents = sorted(titles)
    result: dict[str, Any] = {"questions": len(questions), "seed": seed}
    for own in (True, False):
        picked = wrong = 0
        examples: list[dict[str, str]] = []
        for text, intent in questions:
            others = rng.sample([i for i in intents if i != intent], 3)
            shown = [intent, *others[:2]] if own else others
            rng.shuffle(shown)
            choice = read_choice(text, [(i, titles[i]) for i in shown])
            if choice is None:
                continue
            picked += 1
            if choice != intent:
                wrong += 1
                examples.append({"question": text, "intent": intent, "read_as": choice})
        key = "own_intent_shown" if own else "own_intent_not_shown"
        result[key] = {"read_as_a_choice": picked, "wrong": wrong, "wrong_examples": examples[:10]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before", default="3b3f8e0", help="the revision whose small-talk rules read 'before'"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BANKING77 (test.csv)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    rows = read_rows()
    readings = {
        "before": reader(old_small_talk(args.before).read_small_talk, choices=False),
        "now": reader(read_small_talk, choices=True),
    }
    results: dict[str, Any] = {
        "data": str(DATA.relative_to(ROOT)),
        "before_revision": args.before,
        "sets": {},
    }
    print(
        f"{'set':<7} {'after':<13} {'messages':>8} {'right before':>13} {'right now':>10} "
        f"{'wrong before':>13} {'wrong now':>10}"
    )
    for part, after in [(part, after) for part in SETS for after in AFTER]:
        subset = [r for r in rows if r["after"] == after and r["set"] == part]
        if not subset:
            continue
        entry: dict[str, Any] = {"messages": len(subset)}
        for name, read in readings.items():
            read_as = [read(after, r["message"]) for r in subset]
            entry[name] = {
                "right": sum(got == r["expected"] for got, r in zip(read_as, subset, strict=True)),
                # read as another label than the model's question: a wrong reply, not one left to the model
                "wrong": sum(
                    got not in (r["expected"], "question") for got, r in zip(read_as, subset, strict=True)
                ),
                "misses": [
                    {"message": r["message"], "expected": r["expected"], "read_as": got}
                    for got, r in zip(read_as, subset, strict=True)
                    if got != r["expected"]
                ],
            }
        results["sets"][f"{part}/{after}"] = entry
        print(
            f"{part:<7} {after:<13} {len(subset):>8} {entry['before']['right']:>13} "
            f"{entry['now']['right']:>10} {entry['before']['wrong']:>13} {entry['now']['wrong']:>10}"
        )
    for after, entry in results["sets"].items():
        for miss in entry["now"]["misses"]:
            print(
                f"  missed after {after}: {miss['message']!r} expected {miss['expected']}, "
                f"read as {miss['read_as']}"
            )
    typed = questions_after_choices(args.data)
    results["banking77_test_after_choices"] = typed
    for key in ("own_intent_shown", "own_intent_not_shown"):
        print(
            f"BANKING77 test ({typed['questions']}) after 3 choices, {key.replace('_', ' ')}: "
            f"{typed[key]['read_as_a_choice']} read as a choice, {typed[key]['wrong']} of them wrong"
        )
        for example in typed[key]["wrong_examples"]:
            print(f"  {example['question']!r} ({example['intent']}) read as {example['read_as']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replies.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
