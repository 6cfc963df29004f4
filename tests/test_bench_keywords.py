"""The keyword-messages benchmark: the keyword versions it makes and how it scores the check (the hashing toy
engine with two timing intents, no encoder)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bot.keywords import keywords_of
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("keywords.py")


def test_a_keyword_version_is_one_or_two_neighbouring_topic_words(bench: Any) -> None:
    rng = random.Random(0)
    text = "How long does the card delivery take for my new card?"
    versions = {bench.keyword_version(text, rng) for _ in range(50)}
    topic = ["long", "card", "delivery", "take", "new", "card"]
    pairs = {" ".join(topic[i : i + 2]) for i in range(len(topic) - 1)}
    assert versions <= set(topic) | pairs and len(versions) > 4
    assert all(keywords_of(v) is not None for v in versions)  # each is a keyword message
    assert bench.keyword_version("How is it?", rng) is None


def test_the_check_is_scored_against_answering_as_the_models_do(bench: Any, timing_engine: Any) -> None:
    texts = ["card", "transfer", "close my account"]
    labels = ["card_arrival", "transfer_timing", "terminate_account"]
    index = timing_engine.keywords
    figures = bench.sweep(timing_engine, texts, labels, [0.5, 1.01])
    assert timing_engine.keywords is index and index.min_share == 0.7  # put back as it was
    assert list(figures) == ["none", "0.5", "1.01"]
    assert figures["none"]["vague"] == 0 and figures["none"]["messages"] == 3
    every = figures["1.01"]  # no intent reaches it: every answered keyword message is asked about
    assert every["vague"] >= 1 and every["asked"] >= figures["none"]["asked"] + every["vague"]
    assert every["answered_right"] + every["answered_wrong"] < 3
    assert every["reachable"] >= figures["none"]["reachable"]  # the answer is now among the choices
