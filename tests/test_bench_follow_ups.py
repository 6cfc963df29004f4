"""The follow-up benchmark: its conversation sets are well formed, and it scores each way of reading as the
chat reads (the hashing toy engine with two timing intents, no encoder)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from bot.engine import AnsweringEngine
from tests.conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("follow_ups.py")


def test_the_committed_sets_name_demo_intents_and_hold_each_kind(bench: Any) -> None:
    with (ROOT / "serving" / "demo_data" / "answers.csv").open(newline="", encoding="utf-8") as handle:
        intents = {row["label"] for row in csv.DictReader(handle)}
    for path in bench.SETS.values():
        rows = bench.read_conversations(path)
        kinds = {row["kind"] for row in rows}
        assert kinds == set(bench.KINDS)
        for row in rows:
            assert row["first_intent"] in intents
            assert (row["intent"] in intents) == (row["kind"] != "not_a_question")
            assert row["first"].strip() and row["follow_up"].strip()
    chosen, held_out = (bench.read_conversations(p) for p in bench.SETS.values())
    assert len(chosen) == 61 + 16 and len(held_out) == 32 + 8  # same_topic: 16 and 8
    for rows in (chosen, held_out):  # a follow-up about the same thing asks for the first question's intent
        assert all(r["intent"] == r["first_intent"] for r in rows if r["kind"] == "same_topic")
        assert all(r["intent"] != r["first_intent"] for r in rows if r["kind"] == "follow_up")
    # the held-out set is its own: none of its follow-ups is in the set the rule was chosen on
    assert not {r["follow_up"] for r in held_out} & {r["follow_up"] for r in chosen}


def test_a_bad_kind_names_the_file_and_line(bench: Any, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("kind,first,first_intent,follow_up,intent\nfollow_up,a,x,b,y\nfollowup,a,x,b,y\n")
    with pytest.raises(SystemExit, match=r"c\.csv:3: kind must be one of"):
        bench.read_conversations(path)


def test_each_reading_is_scored_as_the_chat_reads(bench: Any, timing_engine: AnsweringEngine) -> None:
    rows = [
        {
            "kind": "follow_up",
            "first": "where is my card",
            "first_intent": "card_arrival",
            "follow_up": "how long does that take?",
            "intent": "card_delivery_estimate",
        },
        {
            "kind": "new_topic",
            "first": "where is my card",
            "first_intent": "card_arrival",
            "follow_up": "how do i change my pin",
            "intent": "change_pin",
        },
        {
            "kind": "not_a_question",
            "first": "where is my card",
            "first_intent": "card_arrival",
            "follow_up": "qwerty zxcvb plonk",
            "intent": "",
        },
    ]
    result = bench.conversations(timing_engine, rows, 0.6)
    follow = result["follow_up"]
    assert follow["conversations"] == 1
    assert follow["alone"]["right"] == 0 and follow["with follow-ups"]["right"] == 1
    assert result["new_topic"]["alone"]["right"] == result["new_topic"]["with follow-ups"]["right"] == 1
    assert result["not_a_question"]["with follow-ups"]["no_answer"] == 1
    for kind in bench.KINDS:
        for way in ("alone", "with follow-ups"):
            assert sum(result[kind][way].values()) == result[kind]["conversations"]


def test_questions_that_stand_alone_after_another(bench: Any, timing_engine: AnsweringEngine) -> None:
    texts = ["where is my card", "how do i change my pin", "close my account", "how long does that take?"]
    labels = ["card_arrival", "change_pin", "terminate_account", "card_delivery_estimate"]
    figures = bench.after_other_questions(timing_engine, texts, labels, 0, 0.6)
    assert figures["refer_back"] == pytest.approx(0.25)
    for way in ("alone", "with follow-ups"):
        row = figures[way]
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["answered"] <= 1 and row["ms_per_message"] > 0
    assert figures["alone"]["read_with_the_question_before"] == 0
    assert figures["alone"]["accuracy"] >= 0.75  # the three that stand alone


def test_banking77s_spelling_of_one_label_counts_as_the_demos(
    bench: Any, timing_engine: AnsweringEngine
) -> None:
    import dataclasses

    answered = timing_engine.predict("where is my card")
    assert answered.status == "answered"
    raw = dataclasses.replace(answered, intent="reverted_card_payment?")
    assert bench.outcome(raw, "reverted_card_payment") == "right"
    assert bench.outcome(answered, "reverted_card_payment") == "wrong"
