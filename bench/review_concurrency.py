"""Many reviewers and routers at once on PostgreSQL: does the review loop keep its books straight?

With PostgreSQL, HelpLoop's web app runs several processes (gunicorn workers and threads) and only the
database orders their writes. This bench starts ``--reviewers`` threads, each with its own connection, that
take the next item, answer it (mostly the same label, sometimes another) and now and then take the answer back
(``--change-share``), until nothing is left for them; beside them ``--routers`` threads route more customer
questions that join the items or open new ones. Then it counts what must never happen:

- errors (a deadlock or a serialisation failure reaches a reviewer as a 500 and loses the answer);
- an item and question with two training pairs (the item was resolved twice);
- an item with more judgements than it asked for;
- an item whose cluster size is not its number of member questions (a lost update).

Each run uses a fresh schema of the database at ``--url`` (dropped at the end); JSON in
bench/results/review_concurrency.json.

    .venv/bin/python bench/review_concurrency.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--reviewers 12] [--items 40] [--routers 2] [--routed 60] [--change-share 0.2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core import migrate  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn, User, VerifiedPair  # noqa: E402
from core.registry import get_or_create_conversation, log_turn  # noqa: E402
from crowd_feedback.review import (  # noqa: E402
    ReviewError,
    ReviewPolicy,
    next_item,
    route_turn,
    submit_judgement,
    withdraw_judgement,
)
from crowd_feedback.reviewers import create_user  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INTENTS = ["card_arrival", "change_pin", "exchange_rate"]
POLICY = ReviewPolicy(gold_rate=0.0, judgements=3, max_judgements=5, model_voter=False)


def question_vector(number: int) -> np.ndarray:
    vector = np.random.default_rng([number, 77]).normal(size=16)
    return vector / np.linalg.norm(vector)


def customer_turn(session: Session, text: str) -> Turn:
    """A handed-off turn of a new conversation, as the chat API logs it."""
    conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
    return log_turn(
        session,
        conversation_id=conversation.id,
        user_text=text,
        status="handoff",
        intent=None,
        answer="",
        confidence=0.3,
        candidates=[{"intent": "card_arrival", "probability": 0.3, "title": "card_arrival"}],
        member_scores={},
        model_version="v1",
        latency_ms=1.0,
        served_by="production",
    )


def route_question(session: Session, number: int, *, again: bool = False) -> None:
    """Question ``number`` asked by a customer and handed off, routed to review (asked ``again``: the same
    vector, so it joins that question's item while it is pending)."""
    route_turn(
        session,
        turn=customer_turn(session, f"question {number}" + (" again" if again else "")),
        reasons=["handoff"],
        embedding=question_vector(number),
        policy=POLICY,
    )


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {"answers": 0, "refused": 0, "taken_back": 0, "routed": 0}
        self.errors: list[str] = []

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def error(self, where: str, exc: Exception) -> None:
        with self.lock:
            self.errors.append(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")


def reviewer(engine: Any, user_id: int, change_share: float, tally: Tally) -> None:
    rng = random.Random(user_id)
    while True:
        with Session(engine) as session:
            try:
                user = session.get(User, user_id)
                item = next_item(session, reviewer=user, policy=POLICY)
                session.commit()
                if item is None:
                    return
                label = rng.choice(INTENTS) if rng.random() < 0.3 else INTENTS[0]
                submit_judgement(
                    session,
                    item_id=item.id,
                    reviewer=user,
                    label=label,
                    answer_ok=None,
                    known_intents=INTENTS,
                    policy=POLICY,
                )
                session.commit()
                tally.add("answers")
                if rng.random() < change_share:
                    withdraw_judgement(session, item_id=item.id, reviewer=user, policy=POLICY)
                    session.commit()
                    tally.add("taken_back")
            except ReviewError:  # the item was settled meanwhile: the answer is refused, as it should be
                session.rollback()
                tally.add("refused")
            except Exception as exc:  # what must not happen
                session.rollback()
                tally.error("reviewer", exc)


def router(engine: Any, questions: list[int], tally: Tally) -> None:
    for number in questions:
        with Session(engine) as session:
            try:
                route_question(session, number, again=True)
                session.commit()
                tally.add("routed")
            except Exception as exc:
                session.rollback()
                tally.error("router", exc)


def books(session: Session) -> dict[str, Any]:
    """What the run left that must never be: duplicate pairs, over-judged items, wrong cluster sizes."""
    duplicates = session.execute(
        select(VerifiedPair.item_id, VerifiedPair.text)
        .group_by(VerifiedPair.item_id, VerifiedPair.text)
        .having(func.count() > 1)
    ).all()
    over_judged = session.execute(
        select(ReviewItem.id)
        .join(Judgement, Judgement.item_id == ReviewItem.id)
        .group_by(ReviewItem.id, ReviewItem.required_judgements)
        .having(func.count(Judgement.id) > ReviewItem.required_judgements)
    ).all()
    members = dict(
        session.execute(select(ReviewItemTurn.item_id, func.count()).group_by(ReviewItemTurn.item_id)).all()
    )
    sizes = session.execute(select(ReviewItem.id, ReviewItem.cluster_size)).all()
    statuses = dict(
        session.execute(select(ReviewItem.status, func.count()).group_by(ReviewItem.status)).all()
    )
    return {
        "items": len(sizes),
        "statuses": statuses,
        "duplicate_pairs": len(duplicates),
        "over_judged_items": len(over_judged),
        "wrong_cluster_sizes": sum(size != members.get(item_id, 0) for item_id, size in sizes),
    }


def run(
    url: str, *, reviewers: int, items: int, routers: int, routed: int, change_share: float
) -> dict[str, Any]:
    """One run in a fresh schema of ``url``'s database (dropped after)."""
    schema = f"helploop_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    engine = make_engine(f"{url}{separator}options=-csearch_path%3D{schema}")
    try:
        migrate.upgrade(engine)
        with Session(engine) as session:
            for number in range(items):
                route_question(session, number)
            people = [
                create_user(session, username=f"bench{i}", password="correct horse battery", role="reviewer")
                for i in range(reviewers)
            ]
            session.commit()
            user_ids = [person.id for person in people]
        tally = Tally()
        numbers = [n % items for n in range(routed)]
        threads = [threading.Thread(target=reviewer, args=(engine, u, change_share, tally)) for u in user_ids]
        threads += [
            threading.Thread(target=router, args=(engine, numbers[i::routers], tally)) for i in range(routers)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        seconds = time.perf_counter() - started
        with Session(engine) as session:
            found = books(session)
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return {
        "seconds": round(seconds, 1),
        **tally.counts,
        "errors": len(tally.errors),
        "first_errors": tally.errors[:3],
        **found,
    }


COLUMNS = (
    "seconds",
    "answers",
    "taken_back",
    "refused",
    "routed",
    "items",
    "errors",
    "duplicate_pairs",
    "over_judged_items",
    "wrong_cluster_sizes",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="a PostgreSQL database (a schema is made in it)")
    parser.add_argument("--reviewers", type=int, default=12)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--routers", type=int, default=2)
    parser.add_argument("--routed", type=int, default=60, help="questions the routers route during the run")
    parser.add_argument("--change-share", type=float, default=0.2, help="share of answers taken back")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not args.url.startswith("postgresql"):
        parser.error("--url must be a PostgreSQL database (SQLite serialises writers: nothing to race)")
    runs = []
    print(" ".join(f"{c:>{max(len(c), 6)}}" for c in ("run", *COLUMNS)))
    for number in range(args.runs):
        result = run(
            args.url,
            reviewers=args.reviewers,
            items=args.items,
            routers=args.routers,
            routed=args.routed,
            change_share=args.change_share,
        )
        runs.append(result)
        cells = zip(("run", *COLUMNS), (number, *(result[c] for c in COLUMNS)), strict=True)
        print(" ".join(f"{v!s:>{max(len(c), 6)}}" for c, v in cells), flush=True)
        for line in result["first_errors"]:
            print("   ", line)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("reviewers", "items", "routers", "routed", "change_share")}
    (args.out / "review_concurrency.json").write_text(
        json.dumps({"settings": settings, "runs": runs}, indent=2)
    )
    broken = sum(
        r["errors"] + r["duplicate_pairs"] + r["over_judged_items"] + r["wrong_cluster_sizes"] for r in runs
    )
    print("books straight in every run" if broken == 0 else f"{broken} things that must never happen")


if __name__ == "__main__":
    main()
