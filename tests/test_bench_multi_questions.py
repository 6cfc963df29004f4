"""The two-questions benchmark: how it joins two questions into one message, draws its pairs, and scores
both readings (the hashing toy engine with two timing intents, no encoder)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("multi_questions.py")


def test_two_questions_are_joined_as_a_customer_types_them(bench: Any) -> None:
    assert bench.joined("where is my card", "change pin please") == "where is my card? change pin please"
    assert bench.joined("my card has not arrived ", " pin?") == "my card has not arrived. pin?"
    assert bench.joined("Card lost!", "what now") == "Card lost! what now"


def test_two_questions_are_chained_by_a_word_when_the_second_asks(bench: Any) -> None:
    assert bench.connected("Where is my card?", "How do I pay", " and also ") == (
        "Where is my card and also how do I pay"
    )
    texts = ["where is my card?", "How do I pay", "my card is broken", "can I get a refund"]
    chained = bench.connected_pairs(texts, [(0, 1), (1, 2), (2, 3)], seed=0)
    assert [(a, b) for _, a, b in chained] == [(0, 1), (2, 3)]  # "my card is broken" asks nothing
    for message, a, b in chained:
        first, second = texts[a].rstrip("?"), texts[b][:1].lower() + texts[b][1:]
        connector = message[len(first) : len(message) - len(second)]
        assert message.startswith(first) and message.endswith(second) and connector in bench.CONNECTORS
    assert chained == bench.connected_pairs(texts, [(0, 1), (1, 2), (2, 3)], seed=0)


def test_pairs_are_of_two_intents_and_the_same_for_a_seed(bench: Any) -> None:
    labels = ["a", "a", "b", "c", "c"]
    pairs = bench.draw_pairs(labels, 20, seed=3)
    assert len(pairs) == 20 and all(labels[x] != labels[y] for x, y in pairs)
    assert pairs == bench.draw_pairs(labels, 20, seed=3) != bench.draw_pairs(labels, 20, seed=4)


def test_both_intents_of_a_pair_are_reached_only_with_the_parts_read(bench: Any, timing_engine: Any) -> None:
    texts = [
        "My card has not arrived and my card is still not delivered",
        "Also, how do I close my account",
        "when will my card arrive",
    ]
    labels = ["card_arrival", "terminate_account", "card_arrival"]
    figures = bench.score_pairs(timing_engine, texts, labels, [(0, 1)])
    assert figures["pairs"] == figures["split"] == 1
    assert figures["statuses"]["answered"] == figures["one_answered_right"] == 1
    assert (figures["both_reachable_before"], figures["both_reachable"]) == (0, 1)
    assert (figures["extra_chips_right"], figures["extra_chips_wrong"]) == (1, 0)
    chained = "My card has not arrived and my card is still not delivered and also how do I close my account"
    figures = bench.score_pairs(timing_engine, texts, labels, [(0, 1)], [chained])
    assert figures["split"] == figures["one_answered_right"] == 1
    assert (figures["both_reachable_before"], figures["both_reachable"]) == (0, 1)
    singles = bench.score_singles(timing_engine, texts, labels)
    assert singles["questions"] == 3 and singles["answered_of_several_sentences"] == 0
    assert singles["with_extra_chips"] == singles["extra_chips"] == 0
