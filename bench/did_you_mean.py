"""Does the customer's answer to "did you mean" save reviews, and is it safe when customers click carelessly?

Simulated on BANKING77, through the product's own code. For each seed: fit the engine (frozen MiniLM, the
product's gate) on ``--shots`` examples per intent; run it on ``--rows`` training rows outside the shots
(never the test split); every turn it answers with "did you mean" becomes a review item
(``crowd_feedback.review.route_turn`` on a temporary SQLite database, one item per question), with the chips
its reply showed. Simulated reviewers (``loop_sim.Crowd``: 15 with accuracies drawn from 0.7-0.95, 5 spammers
who answer at random; no gold items, so every reviewer has the new-reviewer weight) take each item through
``next_item`` / ``submit_judgement`` until it resolves (posterior >= 0.9, two judgements at least) or
escalates after five. The bot's shortlist is the item's prior, as in the product.

Arms, same items, same reviewers, same random stream for the reviewers:
  people     — no clicks are recorded (the product before migration 0015)
  customers  — a customer clicks nothing with probability ``--no-click``; otherwise, when their intent was one
               of the choices, they click it with probability ``--customer-accuracy`` (another choice
               otherwise); when it was not offered, they click one of the choices at random
  careless   — customers who click a choice at random, whatever they meant: their clicks must cost nothing

Reviewers' mistakes are uniform over the other intents by default; ``--confusable P`` makes a share P of them
(spammers excepted) fall on the bot's other top candidates, the look-alike intents people really confuse.

Printed: judgements per item, resolved and escalated shares, accuracy of the resolved labels against
BANKING77's, and the picks' measured accuracy, chance-corrected lift and weight at the end; JSON in
bench/results/did_you_mean.json.

    .venv/bin/python bench/did_you_mean.py [--seeds 0 1 2] [--shots 10] [--rows 1500] [--data DIR]
                                           [--customer-accuracy 0.85] [--no-click 0.3] [--confusable 0.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.loop_sim import DEFAULT_DATA, Crowd, fit  # noqa: E402
from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import CLARIFY, Prediction  # noqa: E402
from bot.evaluation import sample_shots  # noqa: E402
from core import migrate  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from core.models import Judgement, ReviewItem  # noqa: E402
from core.registry import get_or_create_conversation, log_turn, record_choice  # noqa: E402
from crowd_feedback.review import (  # noqa: E402
    ReviewPolicy,
    next_item,
    pick_trust,
    route_turn,
    submit_judgement,
)
from crowd_feedback.reviewers import create_user  # noqa: E402

ARMS = ("people", "customers", "careless")
POLICY = ReviewPolicy(gold_rate=0.0, audit_rate=0.0)  # the product's defaults otherwise (3 / 5 / 0.9)


def customer_click(
    arm: str, truth: str, shown: list[str], rng: np.random.Generator, args: argparse.Namespace
) -> str | None:
    """What a simulated customer clicks after "did you mean" (None: nothing)."""
    if arm == "people" or rng.random() < args.no_click:
        return None
    if arm == "careless" or truth not in shown:
        return str(rng.choice(shown))
    if rng.random() < args.customer_accuracy or len(shown) == 1:
        return truth
    return str(rng.choice([name for name in shown if name != truth]))


def run_arm(
    arm: str,
    turns: list[tuple[Prediction, str]],
    labels: list[str],
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Route every clarify turn, record the arm's clicks, let the crowd judge item by item. Each item's
    reviewers and their answers are drawn from the item's own random stream, the same in every arm: the arms
    differ only where a click changes how many judgements an item takes or what it resolves to."""
    crowd = Crowd(labels, np.random.default_rng([seed, 2]))
    known = list(labels)
    with tempfile.TemporaryDirectory() as directory:
        engine = make_engine(f"sqlite:///{Path(directory) / 'bench.sqlite3'}")
        migrate.upgrade(engine)
        with Session(engine, expire_on_commit=False) as session:
            people = {  # usernames need three characters at least
                name: create_user(
                    session, username=f"sim-{name}", password="not used here 123", role="reviewer"
                )
                for name in crowd.names
            }
            truths: dict[int, str] = {}
            for index, (prediction, truth) in enumerate(
                tqdm(turns, desc=f"{arm:>9}", unit="item", leave=False)
            ):
                item_rng = np.random.default_rng([seed, 3, index])
                order = [str(name) for name in item_rng.permutation(crowd.names)[: POLICY.max_judgements]]
                near = [c.intent for c in prediction.ranking[:5] if c.intent != truth and c.intent in labels]
                answers = []
                for name in order:
                    if item_rng.random() < crowd.accuracy[name]:
                        answers.append(truth)
                    elif near and not name.startswith("spam") and item_rng.random() < args.confusable:
                        answers.append(str(item_rng.choice(near)))  # a mistake between look-alike intents
                    else:
                        answers.append(str(item_rng.choice([x for x in labels if x != truth])))
                conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
                shown = [c.intent for c in prediction.suggestions]
                turn = log_turn(
                    session,
                    conversation_id=conversation.id,
                    user_text=prediction.text,
                    status=prediction.status,
                    intent=prediction.intent,
                    answer="",
                    confidence=min(max(prediction.confidence, 0.0), 1.0),
                    candidates=[c.to_dict() for c in prediction.ranking],
                    member_scores={},
                    model_version="bench",
                    latency_ms=0.0,
                    suggested=shown,
                )
                click = customer_click(arm, truth, shown, np.random.default_rng([seed, 1, index]), args)
                if click is not None:
                    record_choice(session, conversation_id=conversation.id, intent=click)
                item = route_turn(session, turn=turn, reasons=["clarify"], embedding=None, policy=POLICY)
                assert item is not None
                truths[item.id] = truth
                for name, label in zip(order, answers, strict=True):
                    if item.status != "pending":
                        break
                    claimed = next_item(session, reviewer=people[name], policy=POLICY)
                    assert claimed is item
                    submit_judgement(
                        session,
                        item_id=item.id,
                        reviewer=people[name],
                        label=label,
                        answer_ok=None,
                        known_intents=known,
                        policy=POLICY,
                    )
                session.commit()
            items = session.scalars(select(ReviewItem)).all()
            judgements = session.scalar(select(func.count()).select_from(Judgement)) or 0
            resolved = [i for i in items if i.status == "resolved"]
            correct = sum(i.resolved_label == truths[i.id] for i in resolved)
            trust = pick_trust(session)
        engine.dispose()
    return {
        "items": len(items),
        "judgements": int(judgements),
        "judgements_per_item": judgements / max(len(items), 1),
        "resolved_share": len(resolved) / max(len(items), 1),
        "escalated_share": sum(i.status == "escalated" for i in items) / max(len(items), 1),
        "resolved_accuracy": correct / max(len(resolved), 1),
        "pick_accuracy": trust.accuracy,
        "pick_lift": trust.lift,
        "pick_checked": trust.checked,
        "pick_weight": trust.weight,
    }


def run_seed(
    seed: int, encoder: CachingEncoder, train: tuple[list[str], list[str]], args: argparse.Namespace
) -> dict[str, Any]:
    shots = sample_shots(*train, shots=args.shots, seed=seed)
    in_kb = set(shots[0])
    rest = [(t, label) for t, label in zip(*train, strict=True) if t not in in_kb]
    rng = np.random.default_rng(seed)
    rows = [rest[i] for i in rng.permutation(len(rest))[: args.rows]]
    bot = fit(encoder, *shots, seed=seed)
    predictions = bot.predict_batch([t for t, _ in rows])
    turns = [(p, label) for p, (_, label) in zip(predictions, rows, strict=True) if p.status == CLARIFY]
    offered = sum(label in {c.intent for c in p.suggestions} for p, label in turns)
    print(
        f"seed {seed}: {len(turns)} of {len(rows)} questions asked 'did you mean'; "
        f"the customer's intent was among the choices for {offered} ({offered / max(len(turns), 1):.1%})",
        flush=True,
    )
    arms = {arm: run_arm(arm, turns, sorted(set(train[1])), seed, args) for arm in ARMS}
    return {"clarify_items": len(turns), "offered_share": offered / max(len(turns), 1), "arms": arms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1500, help="training rows outside the shots, per seed")
    parser.add_argument("--customer-accuracy", type=float, default=0.85)
    parser.add_argument("--no-click", type=float, default=0.3)
    parser.add_argument(
        "--confusable",
        type=float,
        default=0.0,
        help="share of a (non-spammer) reviewer's mistakes made between the bot's top candidates instead of "
        "uniformly over all intents",
    )
    parser.add_argument("--name", default="did_you_mean", help="the results file's name")
    args = parser.parse_args()
    train = read_labelled_csv(args.data / "train.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(threads=2))
    started = time.perf_counter()
    runs = {seed: run_seed(seed, encoder, train, args) for seed in args.seeds}
    print(
        f"\n{'seed':<6}{'arm':<11}{'items':>7}{'judg./item':>12}{'resolved':>10}{'escalated':>11}"
        f"{'accuracy':>10}{'pick acc.':>11}{'lift':>7}{'weight':>8}"
    )
    for seed, run in runs.items():
        for arm, r in run["arms"].items():
            pick = "" if r["pick_accuracy"] is None else f"{r['pick_accuracy']:.3f}"
            lift = "" if r["pick_lift"] is None else f"{r['pick_lift']:.3f}"
            print(
                f"{seed:<6}{arm:<11}{r['items']:>7}{r['judgements_per_item']:>12.3f}{r['resolved_share']:>10.3f}"
                f"{r['escalated_share']:>11.3f}{r['resolved_accuracy']:>10.4f}{pick:>11}{lift:>7}"
                f"{r['pick_weight']:>8.2f}"
            )
    summary = {}
    for arm in ARMS:
        summary[arm] = {
            key: float(np.mean([run["arms"][arm][key] for run in runs.values()]))
            for key in ("judgements_per_item", "resolved_share", "escalated_share", "resolved_accuracy")
        }
    base = summary["people"]
    for arm in ARMS:
        s = summary[arm]
        s["judgements_saved"] = 1.0 - s["judgements_per_item"] / base["judgements_per_item"]
        s["accuracy_change_points"] = 100 * (s["resolved_accuracy"] - base["resolved_accuracy"])
        print(
            f"mean {arm:<10} {s['judgements_per_item']:.3f} judgements/item "
            f"({s['judgements_saved']:+.1%} saved), resolved accuracy {s['resolved_accuracy']:.4f} "
            f"({s['accuracy_change_points']:+.2f} points)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items() if k != "seeds"} | {"seeds": args.seeds},
                "summary": summary,
                "per_seed": {str(seed): run for seed, run in runs.items()},
                "seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )
    print(f"wrote {path} ({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
