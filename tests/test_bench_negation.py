"""The negation benchmark: its hand-written messages, and how it reads them three ways from one fit (the
MiniLM engine on the 12-intent fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bot.engine
from bot.engine import ANSWERED, CLARIFY
from bot.negation import contrast_of
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("negation.py")


def test_the_messages_are_contrasts_in_three_sets(bench: Any, tmp_path: Path) -> None:
    sets = bench.read_messages()
    assert {name: len(texts) for name, (texts, _) in sets.items()} == {
        "chosen": 30,
        "holdout": 15,
        "after": 20,
    }
    texts = [t for rows, _ in sets.values() for t in rows]
    assert len(set(texts)) == 65
    # Nearly all hold a contrast; those that do not are read whole ("I don't want Visa, can I get a
    # Mastercard instead": the rest does not say what is wanted in three words of its own).
    assert sum(contrast_of(t) is not None for t in texts) >= 60
    bad = tmp_path / "bad.csv"
    bad.write_text("text,intent,set\nwhere is my card,card_arrival,chosen\nhi,card_arrival,test\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: set must be one of .*not 'test'"):
        bench.read_messages(bad)


def test_three_readings_from_one_fit(bench: Any, small_engine: Any) -> None:
    texts = [
        "I don't want to close my account, I just want to freeze my lost card",
        "I don't want to change my PIN, my PIN is blocked",
        "my new card still hasn't arrived",
    ]
    labels = ["lost_or_stolen_card", "pin_blocked", "card_arrival"]
    kept = bot.engine.RULED_OUT_CHOICE
    read = bench.read_three_ways(small_engine, texts)
    assert bot.engine.RULED_OUT_CHOICE == kept and small_engine.negation is True  # put back as it was
    whole, gate, shipped = (read[way] for way in bench.WAYS)
    assert [(p.status, p.intent) for p in whole] == [
        (ANSWERED, "terminate_account"),
        (ANSWERED, "change_pin"),
        (ANSWERED, "card_arrival"),
    ]
    assert (gate[0].status, gate[0].intent) == (ANSWERED, "lost_or_stolen_card")  # the gate alone answers
    assert (shipped[0].status, shipped[0].suggestions[0].intent) == (CLARIFY, "lost_or_stolen_card")
    assert [(p.status, p.intent) for p in shipped[1:]] == [
        (ANSWERED, "pin_blocked"),
        (ANSWERED, "card_arrival"),
    ]
    figures = {way: bench.score(read[way], labels) for way in bench.WAYS}
    assert figures[bench.OFF] == {
        "messages": 3, "answered_right": 1, "answered_wrong": 2, "asked": 0, "reachable": 1, "ruled_out": 0,
    }  # fmt: skip
    assert figures[bench.GATE]["answered_right"] == 3 and figures[bench.GATE]["ruled_out"] == 2
    assert figures[bench.SHIPPED] == {
        "messages": 3, "answered_right": 2, "answered_wrong": 0, "asked": 1, "reachable": 3, "ruled_out": 2,
    }  # fmt: skip
    assert bench.changed(whole, shipped, labels) == {"changed": 2, "right_lost": 0, "right_gained": 1}
