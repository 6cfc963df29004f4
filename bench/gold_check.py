"""Are check questions drawn from the knowledge base as hard as the real items they hide among?

A reviewer who always presses 1 (the bot's first suggestion) is right on a check question exactly when the
bot's first suggestion is its key; gold catches such a reviewer only if that happens about as rarely as on
real review items. Simulated on BANKING77's training split (never the test split), through the product's code:

For each seed, 1,500 training rows are held back as traffic; the rest is the knowledge base. The engine
(frozen MiniLM, the product's defaults: 5-fold out-of-fold calibration) is fitted on the knowledge base and
answers the traffic: the turns it routes to review (it asked "did you mean" or handed over, or its members
disagree) are the real items, and their share whose first suggestion is the truth is what pressing 1 earns
there. Then ``crowd_feedback.gold.add_gold_from_knowledge_base`` draws ``--per-intent`` check questions per
intent on a temporary SQLite database, three ways:

  in-sample   — drawn at random and shown with the trained model's own view (the product before held-out rows:
                the model recalls its training row)
  doubt       — drawn by the held-out view's doubt (1 − confidence) alone
  shipped     — the product: first among the examples the held-out bot would not have answered, then by doubt

Printed per way: the share whose first suggestion is the key (what pressing 1 scores), the key among the five
suggestions, the mean shown confidence, and the chance that a press-1 reviewer is suspended (accuracy below
the default 60 %) after 5 and after 10 check questions; JSON in bench/results/gold_check.json.

    .venv/bin/python bench/gold_check.py [--seeds 0 1 2] [--per-intent 2] [--traffic 1500] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.loop_sim import DEFAULT_DATA  # noqa: E402
from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import ANSWERED, AnsweringEngine, EngineConfig  # noqa: E402
from core import migrate  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.kb_files import IntentData, KnowledgeBaseData, read_labelled_csv  # noqa: E402
from core.knowledge_base import import_knowledge_base  # noqa: E402
from core.models import ReviewItem  # noqa: E402
from crowd_feedback.gold import BotView, add_gold_from_knowledge_base, held_out_views  # noqa: E402
from crowd_feedback.review import ReviewPolicy  # noqa: E402

WAYS = ("in-sample", "doubt", "shipped")
POLICY = ReviewPolicy()
MESSAGES = {"clarify_message": "Did you mean one of these?", "handoff_message": "A person will help."}


def suspended_chance(p: float, answered: int, threshold: float = 0.6) -> float:
    """P(a reviewer right with probability p on each check is below ``threshold`` after ``answered``)."""
    below = math.ceil(threshold * answered) - 1  # at most this many right is below the threshold
    return sum(math.comb(answered, k) * p**k * (1 - p) ** (answered - k) for k in range(below + 1))


def figures(rows: list[tuple[str, list[dict[str, Any]], float]]) -> dict[str, Any]:
    """rows: (key, candidates, shown confidence)."""
    first = float(np.mean([bool(c) and c[0]["intent"] == key for key, c, _ in rows]))
    return {
        "n": len(rows),
        "key_first": first,
        "key_in_top5": float(np.mean([key in [x["intent"] for x in c[:5]] for key, c, _ in rows])),
        "mean_confidence": float(np.mean([conf for _, _, conf in rows])),
        "press1_suspended_after_5": suspended_chance(first, 5),
        "press1_suspended_after_10": suspended_chance(first, 10),
    }


def draw(engine: AnsweringEngine, kb: KnowledgeBaseData, way: str, seed: int, per_intent: int) -> list[Any]:
    """The check questions one way draws, through the product's function on a throwaway database."""
    held = held_out_views(engine, **MESSAGES)

    def doubt_only(text: str) -> BotView | None:
        view = held(text)
        return None if view is None else replace(view, routed=False)

    bot_view = {"in-sample": None, "doubt": doubt_only, "shipped": held}[way]
    with tempfile.TemporaryDirectory() as directory:
        database = make_engine(f"sqlite:///{Path(directory) / 'gold.sqlite3'}")
        migrate.upgrade(database)
        with Session(database, expire_on_commit=False) as session:
            import_knowledge_base(session, incoming=kb, source="bench")
            add_gold_from_knowledge_base(
                session, per_intent=per_intent, policy=POLICY, seed=seed, bot_view=bot_view
            )
            gold = session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True))).all()
            rows = []
            for item in gold:
                if item.candidates:
                    rows.append((item.gold_label, list(item.candidates), item.bot_confidence))
                else:  # as the review page showed it before: the trained model's own view
                    p = engine.predict(item.text)
                    rows.append((item.gold_label, [c.to_dict() for c in p.ranking[:5]], p.confidence))
        database.dispose()
    return rows


def run_seed(
    seed: int, encoder: CachingEncoder, train: tuple[list[str], list[str]], args: Any
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train[0]))
    traffic = [(train[0][i], train[1][i]) for i in order[: args.traffic]]
    kb_rows = [(train[0][i], train[1][i]) for i in order[args.traffic :]]
    started = time.perf_counter()
    engine = AnsweringEngine(EngineConfig(seed=seed), encoders={"minilm": encoder})
    engine.fit([t for t, _ in kb_rows], [label for _, label in kb_rows])
    fit_seconds = time.perf_counter() - started
    predictions = engine.predict_batch([t for t, _ in traffic])
    routed = [
        (label, [c.to_dict() for c in p.ranking[:5]], p.confidence)
        for p, (_, label) in zip(predictions, traffic, strict=True)
        if p.status != ANSWERED or p.members_disagree
    ]
    kb = KnowledgeBaseData()
    for text, label in kb_rows:
        kb.intents.setdefault(label, IntentData(label, answer=f"About {label}.")).examples.append(text)
    result = {"fit_seconds": fit_seconds, "real_items": figures(routed), "ways": {}}
    for way in WAYS:
        result["ways"][way] = figures(draw(engine, kb, way, seed, args.per_intent))
    print(
        f"seed {seed}: fitted in {fit_seconds:.0f} s; {len(routed)} of {len(traffic)} traffic turns routed",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-intent", type=int, default=2)
    parser.add_argument("--traffic", type=int, default=1500)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gold_check.json")
    args = parser.parse_args()
    train_file = args.data / "train.csv"
    if not train_file.is_file():
        sys.exit(f"error: {train_file} not found (set --data or HELPLOOP_BANKING77_DIR)")
    train = read_labelled_csv(train_file)
    encoder = CachingEncoder(SentenceTransformerEncoder())
    seeds = {seed: run_seed(seed, encoder, train, args) for seed in args.seeds}

    def mean(path: tuple[str, ...], key: str) -> float:
        values = []
        for result in seeds.values():
            node: Any = result
            for part in path:
                node = node[part]
            values.append(node[key])
        return float(np.mean(values))

    rows = [("real review items", ("real_items",))] + [(way, ("ways", way)) for way in WAYS]
    print(f"\nBANKING77 train split, {len(args.seeds)} seeds, {args.per_intent} check questions per intent")
    print(f"{'':<20}{'1st = key':>10}{'key in 5':>10}{'shown conf':>12}{'press-1 out @5':>16}{'@10':>7}")
    summary: dict[str, Any] = {}
    for name, path in rows:
        values = {
            key: mean(path, key)
            for key in (
                "key_first",
                "key_in_top5",
                "mean_confidence",
                "press1_suspended_after_5",
                "press1_suspended_after_10",
            )
        }
        summary[name] = values
        print(
            f"{name:<20}{values['key_first']:>10.1%}{values['key_in_top5']:>10.1%}"
            f"{values['mean_confidence']:>12.3f}{values['press1_suspended_after_5']:>16.1%}"
            f"{values['press1_suspended_after_10']:>7.1%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "data": str(train_file),
                "seeds": args.seeds,
                "per_intent": args.per_intent,
                "traffic": args.traffic,
                "summary": summary,
                "per_seed": {str(k): v for k, v in seeds.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
