"""The metadata-filter benchmark's parts on the toy engine (no encoder download, seconds): areas from intent
names, one filtered batch per page in the texts' order, and the rejected renormalised design."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine import ANSWERED, AnsweringEngine, EngineConfig, IntentInfo, MetadataFilter
from tests.bot.test_engine import toy_rows
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("metadata_filter.py")


def test_banking77_intents_get_areas_by_their_names(bench: Any) -> None:
    assert bench.area_of("top_up_by_card_charge") == "top_up"  # top-up before cards
    assert bench.area_of("wrong_exchange_rate_for_cash_withdrawal") == "cash"
    assert bench.area_of("card_payment_wrong_exchange_rate") == "exchange"
    assert bench.area_of("beneficiary_not_allowed") == "transfers"
    assert bench.area_of("pin_blocked") == "cards"
    assert bench.area_of("Refund_not_showing_up") == "account"
    assert [bench.other_area(a) for a in bench.AREAS] == [*list(bench.AREAS)[1:], "top_up"]


def test_pages_filter_each_question_and_renormalising_answers_on_the_wrong_page(
    bench: Any, hashing_encoder: Any
) -> None:
    texts, labels = toy_rows()
    areas = {"card_arrival": "cards", "change_pin": "cards", "exchange_rate": "exchange"}
    knowledge = {
        label: IntentInfo(answer=label, metadata={"area": areas.get(label, "account")})
        for label in set(labels)
    }
    engine = AnsweringEngine(EngineConfig(cv_folds=3), encoders={"minilm": hashing_encoder})
    engine.fit(texts, labels, knowledge=knowledge)
    questions = ["when will my card arrive", "what exchange rate do you use", "close my account"]
    own = ["cards", "exchange", "account"]
    on_own = bench.by_area(engine, questions, own)
    assert [p.intent for p in on_own] == ["card_arrival", "exchange_rate", "terminate_account"]
    wrong = ["exchange", "cards", "cards"]
    kept = bench.by_area(engine, questions, wrong)
    assert all(p.status != ANSWERED for p in kept)
    only = MetadataFilter.of([("area", "exchange")])
    assert [c.intent for c in kept[0].ranking] == [
        c.intent for c in engine.predict(questions[0], only=only).ranking
    ]
    rescaled = bench.by_area(engine, questions, wrong, rescale=True)
    # Scaled back to one, the only exchange intent takes all of a card question's probability.
    assert rescaled[0].ranking[0].probability == pytest.approx(1.0)
    assert rescaled[0].status == ANSWERED and rescaled[0].intent == "exchange_rate"
    summary = bench.summarise(rescaled, labels=["card_arrival", "exchange_rate", "terminate_account"])
    assert summary["accuracy"] == 0.0 and summary["answered"] > 0
