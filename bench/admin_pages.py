"""How fast are the operator's and the reviewers' pages on a database that has served a busy month?

Builds a database (a fresh SQLite file by default, or ``--database-url``) with the demo knowledge base
(BANKING77, 77 intents, ~9,000 examples) and ``--turns`` synthetic turns spread over the last 30 days, in
conversations of one to three turns: 75 % answered, 10 % clarify (half of them resolved by a pick), 8 % handed
off, a typed "that's wrong" as 4 % of the turns that follow an answer (40 % of them followed by a pick),
thumbs on 6 % of answers; 80 % of conversations from a web page (500 pages, a few with most of them).
``--items`` of those turns are review items (30 % of answered ones as audits; 60 % resolved, two or three
judgements each by ten reviewers). Then it asks for each page through the app, as a signed-in operator or
reviewer, and times it: the first request warms templates and caches; the median and fastest of ``--repeat``
more are reported.

``--without-scale-indexes`` drops the two indexes migration 0025 added (review_item_turns.turn_id,
conversations.last_activity_at) to show what they are for; expect the overview to take minutes then.

Printed: a table of page, median and fastest milliseconds of the repeats, the first (cold) request's, and
response size; JSON in
bench/results/admin_pages[_without_scale_indexes].json.

    .venv/bin/python bench/admin_pages.py [--turns 200000] [--items 5000] [--repeat 3] [--database-url URL]
                                          [--without-scale-indexes]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import insert, select, text  # noqa: E402
from tqdm import tqdm  # noqa: E402

from core import migrate  # noqa: E402
from core.db import Database  # noqa: E402
from core.kb_files import read_knowledge_base  # noqa: E402
from core.knowledge_base import import_knowledge_base  # noqa: E402
from core.models import (  # noqa: E402
    Conversation,
    Deployment,
    ExampleQuestion,
    Intent,
    Judgement,
    ModelVersion,
    ReviewItem,
    ReviewItemTurn,
    Turn,
)
from core.settings import load_settings  # noqa: E402
from crowd_feedback.reviewers import create_user  # noqa: E402

DEMO_DATA = ROOT / "serving" / "demo_data"
PASSWORD = "bench password 123"
REVIEWERS = 10
BATCH = 5000
SITE = "https://shop.example.com"
PATHS = [f"/help/topic-{i}" for i in range(500)]
TARGETS_MS = {
    "/operator/": 3000.0,
    "/operator/conversations": 1000.0,
    "/operator/widget": 1000.0,
    "/review/next": 200.0,
}


# The deployment history the Runs page compares: BEFORE served until a promotion PROMOTED_DAYS ago, AFTER
# since then, and a canary of AFTER's successor on CANARY_SHARE of the sessions for the last CANARY_DAYS days.
BEFORE, AFTER, CANARY = "bench-1", "bench-2", "bench-3"
PROMOTED_DAYS, CANARY_DAYS, CANARY_SHARE = 12, 3, 0.1


def serving_model(conversation_id: str, started: datetime, now: datetime) -> str:
    if started >= now - timedelta(days=CANARY_DAYS) and int(conversation_id[-2:]) < CANARY_SHARE * 100:
        return CANARY
    return AFTER if started >= now - timedelta(days=PROMOTED_DAYS) else BEFORE


def _deployments(database: Database, now: datetime) -> None:
    """The three models' registry rows and the deployment rows that put them where serving_model says."""
    with database.session() as session:
        for version, days in ((BEFORE, 40), (AFTER, PROMOTED_DAYS + 1), (CANARY, CANARY_DAYS + 1)):
            session.add(
                ModelVersion(
                    version=version,
                    bundle_path=f"/nowhere/{version}",
                    data_hash=version,
                    metrics={"accuracy": 0.9},
                    created_at=now - timedelta(days=days),
                )
            )
        for production, canary, days in (
            (BEFORE, None, 40),
            (AFTER, None, PROMOTED_DAYS),
            (AFTER, CANARY, CANARY_DAYS),
        ):
            session.add(
                Deployment(
                    production_version=production,
                    canary_version=canary,
                    canary_share=CANARY_SHARE if canary else 0.0,
                    actor="omar",
                    reason="bench",
                    created_at=now - timedelta(days=days),
                )
            )
        session.commit()


def fill(database: Database, *, turns: int, items: int, seed: int) -> dict[str, Any]:
    """The knowledge base, the accounts and a month of synthetic traffic with its review items."""
    rng = random.Random(seed)
    with database.session() as session:
        incoming = read_knowledge_base([DEMO_DATA / "examples.csv", DEMO_DATA / "answers.csv"])
        import_knowledge_base(session, incoming=incoming, source="bench: demo knowledge base")
        create_user(session, username="omar", password=PASSWORD, role="operator")
        reviewer_ids = [
            create_user(session, username=f"rev{i}", password=PASSWORD, role="reviewer").id
            for i in range(REVIEWERS)
        ]
        session.commit()
        intents = list(session.scalars(select(Intent.name)))
        texts = list(session.scalars(select(ExampleQuestion.text).limit(3000)))
    now = datetime.now(UTC)
    conversations: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    next_id = started = 0
    bar = tqdm(total=turns, desc="synthetic turns", unit="turn")
    while next_id < turns:
        start = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        started += 1
        cid = f"bench{started:08d}"
        length = rng.choice([1, 1, 2, 3])
        # The widget's page (80 % of chats; the rest from the API without one): a few pages get most chats.
        page = (
            SITE + PATHS[min(int(rng.paretovariate(1.2)) - 1, len(PATHS) - 1)] if rng.random() < 0.8 else None
        )
        conversations.append(
            {
                "id": cid,
                "channel": "widget",
                "created_at": start,
                "last_activity_at": start + timedelta(minutes=1),
                "site": SITE if page else None,
                "page_url": page,
            }
        )
        previous_answered = None
        for k in range(length):
            next_id += 1
            top = rng.sample(intents, 3)
            row: dict[str, Any] = {
                "id": next_id,
                "conversation_id": cid,
                "created_at": start + timedelta(seconds=20 * k),
                "user_text": rng.choice(texts),
                "status": "answered",
                "intent": top[0],
                "answer": "An answer with **markdown**.",
                "confidence": rng.uniform(0.6, 1.0),
                "candidates": [
                    {"intent": name, "probability": p, "title": name}
                    for name, p in zip(top, (0.8, 0.1, 0.05), strict=True)
                ],
                "member_scores": {"logistic_head": [{"intent": name, "score": 0.5} for name in top]},
                "model_version": serving_model(cid, start, now),
                "latency_ms": 5.0,
                "served_by": "canary" if serving_model(cid, start, now) == CANARY else "production",
                "helpful": None,
                "suggested": top[1:],
                "chosen_intent": None,
                "rated_turn_id": None,
                "page": page,
            }
            draw = rng.random()
            if draw < 0.10:
                row.update(status="clarify", intent=None, suggested=top, confidence=0.4)
                if rng.random() < 0.5:
                    row["chosen_intent"] = rng.choice(top)
            elif draw < 0.18:
                row.update(status="handoff", intent=None, suggested=None, confidence=0.1)
            elif draw < 0.22 and previous_answered is not None:
                row.update(
                    status="small_talk",
                    intent=None,
                    user_text="that's wrong",
                    suggested=top,
                    rated_turn_id=previous_answered,
                )
                if rng.random() < 0.4:
                    row["chosen_intent"] = top[0]
            elif rng.random() < 0.06:
                row["helpful"] = rng.random() < 0.3
            previous_answered = next_id if row["status"] == "answered" else None
            rows.append(row)
            bar.update(1)
            if next_id >= turns:
                break
        if len(rows) >= BATCH:
            _flush(database, conversations, rows)
    _flush(database, conversations, rows)
    bar.close()
    _review_items(database, items=items, reviewer_ids=reviewer_ids, rng=rng, turns=next_id, now=now)
    _deployments(database, now)
    return {"intents": len(intents), "turns": next_id}


def _flush(database: Database, conversations: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    with database.session() as session:
        if conversations:
            session.execute(insert(Conversation), conversations)
        if rows:
            session.execute(insert(Turn), rows)
        session.commit()
    conversations.clear()
    rows.clear()


def _review_items(
    database: Database, *, items: int, reviewer_ids: list[int], rng: random.Random, turns: int, now: datetime
) -> None:
    with database.session() as session:
        picked = rng.sample(range(1, turns + 1), min(items * 3, turns))
        chosen = session.execute(
            select(Turn.id, Turn.status, Turn.intent, Turn.candidates).where(
                Turn.id.in_(picked[: min(len(picked), 30000)]), Turn.status != "small_talk"
            )
        ).all()[:items]
        item_rows, members, judgements = [], [], []
        for number, (turn_id, status, intent, candidates) in enumerate(
            tqdm(chosen, desc="review items", unit="item"), 1
        ):
            reason = status
            if status == "answered":
                reason = "audit" if rng.random() < 0.3 else "thumbs_down"
            resolved = rng.random() < 0.6
            label = (intent if rng.random() < 0.9 else rng.choice(["new_intent", "not_a_question"])) or "x"
            item_rows.append(
                {
                    "id": number,
                    "status": "resolved" if resolved else "pending",
                    "reasons": [reason],
                    "text": "a redacted question",
                    "cluster_size": 1,
                    "uncertainty": 0.5,
                    "queue_key": rng.random(),
                    "bot_intent": intent,
                    "bot_answer": "An answer with **markdown**.",
                    "bot_confidence": 0.5,
                    "candidates": candidates,
                    # a vector as routing stores one (MiniLM's 384 dimensions): pending items without one
                    # would be embedded by the chat's router first, which a live installation never has to do
                    "embedding": _unit_vector(rng),
                    "is_gold": False,
                    "required_judgements": 3,
                    "resolved_label": label if resolved else None,
                    "resolved_confidence": 0.95 if resolved else None,
                    "resolved_at": now if resolved else None,
                    "created_at": now - timedelta(days=rng.uniform(0, 30)),
                }
            )
            members.append({"item_id": number, "turn_id": turn_id, "reason": reason})
            for reviewer in rng.sample(reviewer_ids, 3 if resolved else rng.choice([0, 1, 2])):
                judgements.append(
                    {
                        "item_id": number,
                        "reviewer_id": reviewer,
                        "label": label
                        if rng.random() < 0.85
                        else rng.choice(["new_intent", "not_a_question"]),
                        "answer_ok": rng.random() < 0.8,
                        "seconds": rng.uniform(4, 40),
                        "created_at": now - timedelta(days=rng.uniform(0, 30)),
                    }
                )
        for table, values in ((ReviewItem, item_rows), (ReviewItemTurn, members), (Judgement, judgements)):
            for start in range(0, len(values), BATCH):
                session.execute(insert(table), values[start : start + BATCH])
        session.commit()


def _unit_vector(rng: random.Random, dimensions: int = 384) -> list[float]:
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5
    return [round(v / norm, 4) for v in values]


def login(client: Any, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None, "no CSRF token on the login page"
    reply = client.post(
        "/login", data={"csrf_token": token.group(1), "username": username, "password": PASSWORD}
    )
    assert reply.status_code in (302, 303), f"login as {username} failed: {reply.status_code}"


def time_page(client: Any, path: str, repeat: int) -> dict[str, Any]:
    start = time.perf_counter()
    first = client.get(
        path
    )  # cold: templates compiled, the Runs page's minute-long cache of promotion effects
    first_ms = (time.perf_counter() - start) * 1000
    if first.status_code != 200:
        raise SystemExit(f"{path}: HTTP {first.status_code}")
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        reply = client.get(path)
        seconds.append(time.perf_counter() - start)
        assert reply.status_code == 200, f"{path}: HTTP {reply.status_code}"
    return {
        "median_ms": statistics.median(seconds) * 1000,
        "fastest_ms": min(seconds) * 1000,
        "first_ms": first_ms,
        "kib": len(first.get_data()) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a new SQLite file)")
    parser.add_argument("--without-scale-indexes", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from serving.app import create_app

    workdir = Path(tempfile.mkdtemp(prefix="helploop-admin-pages-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    overrides = {
        "environment": "testing",
        "instance_path": str(workdir),
        "database_url": url,
        "load_models_on_start": False,
        "ratelimit_enabled": False,
    }
    database = Database(load_settings(overrides, environ={}))
    migrate.upgrade(database.engine)
    started = time.perf_counter()
    shape = fill(database, turns=args.turns, items=args.items, seed=args.seed)
    fill_seconds = time.perf_counter() - started
    if args.without_scale_indexes:
        with database.engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_review_item_turns_turn_id"))
            connection.execute(text("DROP INDEX ix_conversations_last_activity"))
    if not url.startswith("sqlite"):  # PostgreSQL's autovacuum keeps statistics and, after this many inserts
        # (PostgreSQL 13 on), the visibility map that lets a query read an index alone; an installation's
        # SQLite file has no statistics (nothing runs ANALYZE there), so the SQLite figures are the planner's
        # defaults
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    database.dispose()

    app = create_app({**overrides, "TESTING": True})
    operator, reviewer = app.test_client(), app.test_client()
    login(operator, "omar")
    login(reviewer, "rev0")
    with app.extensions["helploop"].database.session() as session:
        conversation = session.scalars(select(Turn.conversation_id).order_by(Turn.id.desc()).limit(1)).one()
        item = session.scalars(select(ReviewItem.id).order_by(ReviewItem.id).limit(1)).one()
    pages = [
        (operator, "/operator/"),
        (operator, "/operator/conversations"),
        (operator, "/operator/conversations?view=all"),
        (operator, "/operator/conversations?view=all&q=card"),
        (operator, "/operator/conversations?view=all&q=refund"),  # a rarer word (139 turns): the index's case
        (operator, f"/operator/conversations/{conversation}"),
        (operator, "/operator/knowledge/"),
        (operator, "/operator/runs"),  # canary against production, the promotion's before and after
        (operator, "/operator/models"),
        (operator, "/operator/widget"),  # the sites and the pages customers ask from: a month of turns
        (operator, f"/operator/conversations?view=all&asked_from={SITE}{PATHS[0]}"),  # its most asked page
        (operator, "/review/items"),
        (operator, f"/review/items/{item}"),
        (reviewer, "/review/"),
        (reviewer, "/review/next"),
    ]
    if args.without_scale_indexes:
        pages = pages[:3]
    results: dict[str, Any] = {}
    print(f"\n{'page':58s} {'median ms':>10s} {'fastest ms':>11s} {'first ms':>9s} {'KiB':>6s}")
    for client, path in tqdm(pages, desc="pages", unit="page", leave=False):
        figures = time_page(client, path, args.repeat)
        key = path.replace(conversation, "<id>").replace(f"/review/items/{item}", "/review/items/<id>")
        results[key] = figures
        tqdm.write(
            f"{key:58s} {figures['median_ms']:10.0f} {figures['fastest_ms']:11.0f} "
            f"{figures['first_ms']:9.0f} {figures['kib']:6.0f}"
        )
    app.extensions["helploop"].models.stop()
    app.extensions["helploop"].database.dispose()

    out = args.out or ROOT / "bench" / "results" / (
        "admin_pages_without_scale_indexes.json" if args.without_scale_indexes else "admin_pages.json"
    )
    report = {
        "command": "bench/admin_pages.py " + " ".join(sys.argv[1:]),
        "database": "postgresql" if url.startswith("postgresql") else "sqlite (embedded default)",
        "turns": shape["turns"],
        "review_items": args.items,
        "intents": shape["intents"],
        "fill_seconds": round(fill_seconds, 1),
        "without_scale_indexes": args.without_scale_indexes,
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "pages": results,
        "targets_ms": TARGETS_MS,
        "met": {
            path: results[path]["median_ms"] <= target
            for path, target in TARGETS_MS.items()
            if path in results
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
