"""A knowledge base of one question an intent (an FAQ page) holds nothing out that shows how sure the model
is, so no gate can be fitted (bot.calibration.cold_start_gate): the bot answers a message close to an
example, asks "did you mean" with the nearest intents otherwise, and declines what is like nothing in it,
instead of handing every question to a person."""

from __future__ import annotations

import tempfile
from typing import Any

from bot.calibration import COLD_START_FLOOR, COLD_START_SIMILARITY, Gate, cold_start_gate
from bot.engine import ANSWERED, CLARIFY, HANDOFF, AnsweringEngine, EngineConfig

FAQ = {
    "freeze_card": "how do i freeze my lost card",
    "transfer_fee": "is there a fee for international transfers",
    "two_cards": "can i have two cards on one account",
    "close_account": "how do i close my account",
}


def faq_engine(encoder: Any) -> AnsweringEngine:
    engine = AnsweringEngine(EngineConfig(), encoders={"minilm": encoder})
    engine.fit(list(FAQ.values()), list(FAQ))
    return engine


def test_a_gate_that_answers_nothing_serves_by_similarity_and_one_that_answers_keeps_its_threshold() -> None:
    nothing = Gate(threshold=1.0 + 1e-9, margin=0.0, target_precision=0.95, fitted={"coverage": 0.0})
    cold = cold_start_gate(nothing)
    assert cold.similarity == COLD_START_SIMILARITY["0.95"] == 0.85 and cold.threshold == nothing.threshold
    assert Gate.from_config(cold.get_config()) == cold  # kept in the bundle
    assert cold_start_gate(Gate(threshold=1.0 + 1e-9, target_precision=0.99)).similarity == 0.95
    fitted = Gate(threshold=0.6, margin=0.05, target_precision=0.95)
    assert cold_start_gate(fitted) is fitted and "similarity" not in fitted.get_config()


def test_one_question_an_intent_is_answered_asked_about_or_declined(hashing_encoder: Any) -> None:
    engine = faq_engine(hashing_encoder)
    assert engine.gate.similarity == 0.85
    assert engine.gate_options["0.99"]["similarity"] == 0.95  # an operator's stricter choice stays cold
    assert engine.familiarity_floor is not None and engine.familiarity_floor >= COLD_START_FLOOR
    exact = engine.predict("how do i freeze my lost card")
    assert (exact.status, exact.intent) == (ANSWERED, "freeze_card")  # the FAQ's own question
    near = engine.predict("how do i freeze my card")
    assert (near.status, near.intent) == (ANSWERED, "freeze_card")
    vague = engine.predict("card fee")  # close to several, to none enough: the customer picks
    assert vague.status == CLARIFY and len(vague.suggestions) >= 2
    assert {c.intent for c in vague.suggestions} <= set(FAQ)
    assert vague.suggestions[0].intent in ("transfer_fee", "two_cards", "freeze_card")
    stranger = engine.predict("zebra quantum poetry")
    assert stranger.status == HANDOFF and stranger.unfamiliar  # declined as off the topic
    with tempfile.TemporaryDirectory() as folder:
        loaded = AnsweringEngine.load(engine.save(folder), runtime="torch")
        loaded.encoders["minilm"] = hashing_encoder  # the toy encoder is no bundle's
    assert loaded.gate.similarity == 0.85 and loaded.familiarity_floor == engine.familiarity_floor
    assert loaded.predict("how do i freeze my card").intent == "freeze_card"


def test_a_knowledge_base_with_enough_examples_keeps_its_fitted_gate(hashing_encoder: Any) -> None:
    from tests.bot.test_engine import toy_rows

    engine = AnsweringEngine(EngineConfig(), encoders={"minilm": hashing_encoder})
    engine.fit(*toy_rows())
    assert engine.gate.similarity is None and not engine.gate.answers_nothing
