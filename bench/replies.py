"""Replies to the bot: what customers type after an answer or after "did you mean", read by the chat's rules.

`bench/data/replies.csv` holds such messages with what each should be read as: a kind of small talk
(thanks, acknowledgement, goodbye, not_helpful, unclear), the n-th of the choices shown (``choice:N``),
``none_of_these``, or ``question`` (for the model). Two sets: ``first`` (42) was written after the rules of
bot/choice.py and the small-talk phrases of session 45 were coded and before any was read by them; the rules
were then widened on its misses, and ``second`` (32) was written after that and before any was read: each
set a held-out check of the rules as they stood when it was written. Each message is read as the web chat
reads it: after "did you mean" (the choices below), first as an answer to the choices
(bot.choice.read_choice), then as small talk (bot.small_talk); after an answer, as small talk. "Before"
reads the same messages with the small-talk rules of a git revision (default 3b3f8e0, before session 45)
and no typed choices. No model is involved.

    .venv/bin/python bench/replies.py [--before REV] [--out DIR]

Writes bench/results/replies.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.choice import NONE_OF_THESE, read_choice  # noqa: E402
from bot.small_talk import read_small_talk  # noqa: E402

DATA = ROOT / "bench" / "data" / "replies.csv"
# The "did you mean" the choices' rows answer (titles as the demo knowledge base has them).
SHOWN = [
    ("transfer_timing", "How long transfers take"),
    ("pending_transfer", "Pending transfer"),
    ("cancel_transfer", "Cancel a transfer"),
]


LABELS = {"thanks", "acknowledgement", "goodbye", "not_helpful", "unclear", NONE_OF_THESE, "question"} | {
    f"choice:{n}" for n in range(1, len(SHOWN) + 1)
}


SETS = ("first", "second")


def read_rows(path: Path = DATA) -> list[dict[str, str]]:
    """The messages, each checked: ``after`` is answer or choices, ``expected`` one of LABELS."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for line, row in enumerate(rows, start=2):
        if row.get("set") not in SETS:
            raise ValueError(
                f"{path.name}, line {line}: set must be one of {list(SETS)}, not {row.get('set')!r}"
            )
        if row.get("after") not in ("answer", "choices"):
            raise ValueError(
                f"{path.name}, line {line}: after must be answer or choices, not {row.get('after')!r}"
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
    """How the chat reads a message after ``after`` ("answer" or "choices"), as one of the expected labels."""

    def read(after: str, text: str) -> str:
        if choices and after == "choices":
            picked = read_choice(text, SHOWN)
            if picked == NONE_OF_THESE:
                return NONE_OF_THESE
            if picked is not None:
                return f"choice:{[intent for intent, _ in SHOWN].index(picked) + 1}"
        kind = small_talk(text).kind
        return str(kind) if kind is not None else "question"

    return read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before", default="3b3f8e0", help="the revision whose small-talk rules read 'before'"
    )
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
        f"{'set':<7} {'after':<9} {'messages':>8} {'right before':>13} {'right now':>10} "
        f"{'wrong before':>13} {'wrong now':>10}"
    )
    for part, after in [(part, after) for part in SETS for after in ("answer", "choices")]:
        subset = [r for r in rows if r["after"] == after and r["set"] == part]
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
            f"{part:<7} {after:<9} {len(subset):>8} {entry['before']['right']:>13} "
            f"{entry['now']['right']:>10} {entry['before']['wrong']:>13} {entry['now']['wrong']:>10}"
        )
    for after, entry in results["sets"].items():
        for miss in entry["now"]["misses"]:
            print(
                f"  missed after {after}: {miss['message']!r} expected {miss['expected']}, "
                f"read as {miss['read_as']}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replies.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
