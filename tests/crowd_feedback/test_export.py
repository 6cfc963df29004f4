"""Exports of the crowd's work: items with judgements, verified pairs, item,worker,label answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import ReviewItem, Turn
from crowd_feedback.aggregation import answers_from_rows, get_strategy
from crowd_feedback.export import ExportError, check_request, write_export
from crowd_feedback.review import NEW_INTENT, ReviewPolicy, add_gold_item, route_turn
from tests.crowd_feedback.test_review import INTENTS, judge, make_turn, reviewers, vector

POLICY = ReviewPolicy(gold_rate=0.0, judgements=3)


def crowd(session: Session) -> list[int]:
    """Two resolved items (one a cluster with an e-mail in a member question), one pending, one gold."""
    people = reviewers(session, 3)
    first = route_turn(
        session,
        turn=make_turn(session, "=cmd|' /C calc'!A0"),
        reasons=["handoff"],
        embedding=vector(1),
        policy=POLICY,
    )
    second = route_turn(
        session,
        turn=make_turn(session, "new pin please"),
        reasons=["clarify"],
        embedding=vector(2),
        policy=POLICY,
    )
    from crowd_feedback.review import attach_similar_turn, next_item, submit_judgement

    joined = attach_similar_turn(
        session,
        turn=make_turn(session, "new pin please, I am jo@example.com"),
        embedding=vector(4, vector(2), 0.01),
        policy=POLICY,
    )
    assert first and second and joined is second
    labels = {first.id: "card_arrival", second.id: "change_pin"}
    for reviewer in people[:2]:  # in queue order, whichever comes first
        while (item := next_item(session, reviewer=reviewer, policy=POLICY)) is not None:
            submit_judgement(
                session,
                item_id=item.id,
                reviewer=reviewer,
                label=labels[item.id],
                answer_ok=True,
                known_intents=INTENTS,
                policy=POLICY,
            )
    pending = route_turn(
        session, turn=make_turn(session, "hm"), reasons=["thumbs_down"], embedding=vector(3), policy=POLICY
    )
    assert pending is not None
    judge(session, pending, people[2], "exchange_rate", POLICY)
    add_gold_item(session, text="gold question", label="change_pin", policy=POLICY)
    session.flush()
    return [first.id, second.id, pending.id]


def test_items_export_as_json_lines_and_csv_with_judgements_and_redacted_questions(
    db_session: Session, tmp_path: Path
) -> None:
    first, second, pending = crowd(db_session)
    asked = db_session.scalars(select(Turn).where(Turn.user_text == "new pin please")).one()
    asked.chosen_intent = "change_pin"  # the customer clicked it after "did you mean"
    earlier = [{"text": "hi, [NAME] here", "status": "small_talk", "intent": None}]
    db_session.get(ReviewItem, pending).context = earlier
    db_session.flush()
    progress: list[float] = []
    summary = write_export(
        db_session,
        what="items",
        fmt="jsonl",
        out=tmp_path / "items.jsonl",
        batch_size=1,
        report=lambda f, _s: progress.append(f),
    )
    rows = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert summary["rows"] == len(rows) == 3 and [r["item"] for r in rows] == [first, second, pending]
    assert progress == sorted(progress) and len(progress) == 3
    by_id = {r["item"]: r for r in rows}
    assert by_id[second]["status"] == "resolved" and by_id[second]["label"] == "change_pin"
    assert by_id[second]["questions"] == ["new pin please", "new pin please, I am [EMAIL]"]
    assert by_id[second]["asked"] == 2 and by_id[second]["reasons"] == ["clarify"]
    assert [(j["reviewer"], j["label"]) for j in by_id[second]["judgements"]] == [
        ("rev0", "change_pin"),
        ("rev1", "change_pin"),
    ]
    assert all(j["needs_context"] is None for r in rows for j in r["judgements"])  # no earlier turns shown
    times = [j["seconds"] for r in rows for j in r["judgements"]]
    assert len(times) == 5 and all(0.0 <= t < 60.0 for t in times)  # taken and answered within the test
    assert by_id[pending]["status"] == "pending" and by_id[pending]["label"] is None
    assert by_id[second]["customer_pick"] == "change_pin" and by_id[first]["customer_pick"] is None
    assert by_id[pending]["context"] == earlier and by_id[first]["context"] == []
    assert "jo@example.com" not in (tmp_path / "items.jsonl").read_text()

    write_export(db_session, what="items", fmt="csv", out=tmp_path / "items.csv")
    with (tmp_path / "items.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["item"]) for r in table] == [first, second, pending]
    assert table[0]["text"] == "'=cmd|' /C calc'!A0"  # a spreadsheet must not run it
    assert table[1]["answers"] == "rev0=change_pin;rev1=change_pin" and table[1]["judgements"] == "2"
    assert float(table[1]["confidence"]) >= 0.9 and table[2]["label"] == ""
    assert [r["customer_pick"] for r in table] == ["", "change_pin", ""]


def test_the_turn_log_exports_redacted_with_the_bots_reading_of_each_question(
    db_session: Session, tmp_path: Path
) -> None:
    from core.registry import get_or_create_conversation, log_turn

    conversation = get_or_create_conversation(db_session, conversation_id=None, channel="widget")
    sure = log_turn(
        db_session, conversation_id=conversation.id, user_text="my card, mail jo@example.com",
        status="answered", intent="card_arrival", answer="Soon.", confidence=0.91,
        candidates=[
            {"intent": "card_arrival", "probability": 0.91}, {"intent": "card_linking", "probability": 0.05},
            {"intent": "change_pin", "probability": 0.02}, {"intent": "exchange_rate", "probability": 0.01},
        ],
        member_scores={"minilm": [{"intent": "card_arrival", "score": 0.8}]}, model_version="v7",
        latency_ms=12.5, metadata_filter={"metadata": [{"key": "product", "value": "cards"},
        {"key": "region", "value": "uk"}], "logical_operation": "OR"}, kept_from=None,
        context_text="I wrote to jo@example.com",  # a follow-up, read after the question before it
        read_as="my card, mail jo@example.com!",  # as the model read it (a stand-in correction)
        ruled_out="card_linking",  # the customer said it is not about linking a card
        page="https://shop.example.com/cards",  # written from the widget on that page
    )  # fmt: skip
    off = log_turn(
        db_session, conversation_id=conversation.id, user_text="the weather in paris", status="handoff",
        intent=None, answer="", confidence=0.3, candidates=[], member_scores={}, model_version="v7",
        latency_ms=9.0, off_topic=True,  # handed over as off the knowledge base's topic
        language="fr",  # and written in French (bot.language)
    )  # fmt: skip
    sure.helpful = False
    unsure = make_turn(db_session, "=HYPERLINK(1)", status="clarify", confidence=0.4)
    unsure.chosen_intent = "card_arrival"
    off.declined_at = off.created_at  # a stand-in: "none of these" is recorded on a turn that offered choices
    db_session.flush()
    write_export(db_session, what="turns", fmt="jsonl", out=tmp_path / "turns.jsonl", batch_size=1)
    rows = [json.loads(line) for line in (tmp_path / "turns.jsonl").read_text().splitlines()]
    assert [r["turn"] for r in rows] == [sure.id, off.id, unsure.id]
    assert [r["off_topic"] for r in rows] == [False, True, False]
    assert [r["declined_choices"] for r in rows] == [False, True, False]
    assert [r["language"] for r in rows] == [None, "fr", None]
    assert [r["page"] for r in rows] == ["https://shop.example.com/cards", None, None]
    rows = [rows[0], rows[2]]
    assert rows[0]["created_at"].endswith("+00:00")  # UTC, said so (SQLite hands back naive times)
    assert rows[0]["text"] == "my card, mail [EMAIL]"  # only redacted text leaves
    assert (rows[0]["status"], rows[0]["intent"], rows[0]["model_version"]) == (
        "answered",
        "card_arrival",
        "v7",
    )
    assert len(rows[0]["candidates"]) == 4 and rows[0]["member_scores"]["minilm"][0]["score"] == 0.8
    assert rows[0]["helpful"] is False and rows[0]["metadata_filter"]["logical_operation"] == "OR"
    assert (rows[0]["context"], rows[1]["context"]) == ("I wrote to [EMAIL]", None)
    assert (rows[0]["read_as"], rows[1]["read_as"]) == ("my card, mail [EMAIL]!", None)
    assert (rows[0]["vague"], rows[1]["vague"]) == (False, False)
    assert (rows[0]["ruled_out"], rows[1]["ruled_out"]) == ("card_linking", None)
    assert (rows[1]["status"], rows[1]["chosen_intent"], rows[1]["helpful"]) == (
        "clarify",
        "card_arrival",
        None,
    )

    write_export(db_session, what="turns", fmt="csv", out=tmp_path / "turns.csv")
    with (tmp_path / "turns.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["candidates"] == "card_arrival:0.910;card_linking:0.050;change_pin:0.020"  # the top three
    assert table[0]["metadata"] == "product:cards OR region:uk" and table[1]["metadata"] == ""
    assert [row["off_topic"] for row in table] == ["False", "True", "False"]
    assert [row["declined_choices"] for row in table] == ["False", "True", "False"]
    assert [row["language"] for row in table] == ["", "fr", ""]
    assert [row["page"] for row in table] == ["https://shop.example.com/cards", "", ""]
    assert list(table[0])[-1] == "page"  # a new column goes last: readers by position keep working
    table = [table[0], table[2]]
    assert (table[0]["context"], table[1]["context"]) == ("I wrote to [EMAIL]", "")
    assert (table[0]["read_as"], table[1]["read_as"]) == ("my card, mail [EMAIL]!", "")
    assert (table[0]["ruled_out"], table[1]["ruled_out"]) == ("card_linking", "")
    assert (table[0]["latency_ms"], table[0]["helpful"], table[0]["conversation"]) == (
        "12.5",
        "False",
        conversation.id,
    )
    assert table[1]["text"] == "'=HYPERLINK(1)"  # a spreadsheet must not run it
    assert "jo@example.com" not in (tmp_path / "turns.csv").read_text()


def test_answers_export_round_trips_through_truth_inference_and_pairs_list_the_verified_pairs(
    db_session: Session, tmp_path: Path
) -> None:
    first, second, pending = crowd(db_session)
    summary = write_export(db_session, what="answers", fmt="csv", out=tmp_path / "answers.csv")
    with (tmp_path / "answers.csv").open(newline="") as handle:
        rows = [(r["item"], r["worker"], r["label"]) for r in csv.DictReader(handle)]
    assert summary["rows"] == len(rows) == 5  # gold answers are not crowd answers
    result = get_strategy("majority").aggregate(answers_from_rows(rows))
    assert result.labels() == {
        str(first): "card_arrival",
        str(second): "change_pin",
        str(pending): "exchange_rate",
    }

    write_export(db_session, what="pairs", fmt="jsonl", out=tmp_path / "pairs.jsonl")
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert sorted((p["text"], p["intent"], p["item"]) for p in pairs) == [
        ("=cmd|' /C calc'!A0", "card_arrival", first),
        ("new pin please", "change_pin", second),
        ("new pin please, I am [EMAIL]", "change_pin", second),
    ]
    assert all(0.9 <= p["weight"] <= 1.0 for p in pairs)


def test_a_failed_export_leaves_no_file_and_bad_requests_are_refused(
    db_session: Session, tmp_path: Path
) -> None:
    crowd(db_session)
    (tmp_path / "exports").mkdir()
    target = tmp_path / "exports" / "items.csv"
    target.write_text("the previous export\n")

    def cancel(_fraction: float, _step: str) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        write_export(db_session, what="items", fmt="csv", out=target, batch_size=1, report=cancel)
    assert target.read_text() == "the previous export\n" and list(target.parent.iterdir()) == [target]
    with pytest.raises(ExportError, match="unknown export 'users'"):
        check_request("users", "csv")
    with pytest.raises(ExportError, match="answers exports as csv, not 'jsonl'"):
        write_export(db_session, what="answers", fmt="jsonl", out=tmp_path / "x")
    blocker = tmp_path / "a-file"  # a folder that cannot be made: a file has its name
    blocker.write_text("")
    with pytest.raises(ExportError, match=f"{blocker / 'out' / 'x.csv'}: cannot write there"):
        write_export(db_session, what="items", fmt="csv", out=blocker / "out" / "x.csv")
    assert NEW_INTENT  # the special labels export as they are stored


def test_export_files_older_than_a_week_are_pruned(tmp_path: Path) -> None:
    import os
    import time

    from crowd_feedback.jobs import prune_exports

    old, new = tmp_path / "items-old.csv", tmp_path / "items-new.csv"
    old.write_text("x")
    new.write_text("y")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    assert prune_exports(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items-new.csv"]
    assert prune_exports(tmp_path / "missing") == 0
