"""Self-training on unlabelled traffic: AnsweringEngine.fit(traffic_texts=...)."""

from typing import Any

import numpy as np
import pytest

from bot import engine as engine_module
from bot.engine import OUT_OF_SCOPE, AnsweringEngine, EngineConfig
from tests.conftest import TOY
from training.finetune import calibration_split


def split_fit(
    encoder: Any,
    texts: list[str],
    labels: list[str],
    traffic: list[str] | None,
    *,
    threshold: float | None = 0.8,
    name: str = "minilm",
    familiarity_quantile: float = EngineConfig.familiarity_quantile,
) -> AnsweringEngine:
    train, held = calibration_split(labels, 0.15, 0)
    config = EngineConfig(self_training_threshold=threshold, familiarity_quantile=familiarity_quantile)
    return AnsweringEngine(config, encoders={name: encoder}).fit(
        [texts[i] for i in train],
        [labels[i] for i in train],
        calibration_texts=[texts[i] for i in held],
        calibration_labels=[labels[i] for i in held],
        refit_texts=texts,
        refit_labels=labels,
        traffic_texts=traffic,
    )


PARCEL_TRAFFIC = [
    "my card courier has not arrived",
    "card courier still not delivered",
    "where is the courier with my card",
    "waiting for the courier with my card",
    "courier with card not here yet",
    # other intents' traffic, so the card's pseudo-labels do not tilt the ensemble towards it
    "change my pin passcode",
    "pin passcode reset",
    "close my account membership",
    "cancel account membership",
    "exchange rate forex",
    "forex euro rate",
]


def test_traffic_teaches_words_the_labelled_examples_lack(hashing_encoder: Any) -> None:
    """The customers' word "courier" is in no example: traffic the model is sure of ("my card courier has not
    arrived") carries it to card_arrival, and a question the plain engine cannot place is answered."""
    texts, labels = toy_rows()
    plain = split_fit(hashing_encoder, texts, labels, None)
    tuned = split_fit(hashing_encoder, texts, labels, PARCEL_TRAFFIC, threshold=0.5)
    summary = tuned.manifest["training"]["self_training"]
    assert summary["kept"] is True and summary["pseudo_labelled"] == len(PARCEL_TRAFFIC)
    assert summary["held_out_log_loss_with"] <= summary["held_out_log_loss_without"] + 0.01
    question = ["courier"]
    before, _, _ = plain.predict_proba(question)
    after, _, _ = tuned.predict_proba(question)
    card = plain.labels.index("card_arrival")
    assert int(before[0].argmax()) != card  # the plain engine reads it as another intent ...
    assert int(after[0].argmax()) == card and after[0, card] > before[0, card] + 0.2  # ... the tuned one can
    # The combiner and the gate saw the same labelled held-out rows in both: never a traffic question.
    assert tuned.held_out is not None and plain.held_out is not None
    assert tuned.held_out.texts == plain.held_out.texts
    assert tuned.manifest["training"]["rows"] == plain.manifest["training"]["rows"]
    assert tuned.manifest["data_hash"] != plain.manifest["data_hash"]  # what it learnt from differs


def test_self_training_that_predicts_the_held_out_rows_worse_is_dropped(
    hashing_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = toy_rows()
    plain = split_fit(hashing_encoder, texts, labels, None)
    losses = iter([0.10, 0.12])  # without, then with the pseudo-labelled rows: worse by more than 0.01
    monkeypatch.setattr(engine_module, "_held_log_loss", lambda *_args: next(losses))
    dropped = split_fit(hashing_encoder, texts, labels, PARCEL_TRAFFIC, threshold=0.5)
    summary = dropped.manifest["training"]["self_training"]
    assert summary["kept"] is False and summary["pseudo_labelled"] == len(PARCEL_TRAFFIC)
    question = ["courier", "where is my card", "exchange rate for pounds"]
    np.testing.assert_allclose(
        dropped.predict_proba(question)[0], plain.predict_proba(question)[0], rtol=1e-3
    )


def toy_rows() -> tuple[list[str], list[str]]:
    texts = [t for rows in TOY.values() for t in rows]
    return texts, [label for label, rows in TOY.items() for _ in rows]


def test_traffic_needs_a_calibration_set(hashing_encoder: Any) -> None:
    texts, labels = toy_rows()
    engine = AnsweringEngine(EngineConfig(cv_folds=3), encoders={"minilm": hashing_encoder})
    with pytest.raises(ValueError, match="calibration set"):
        engine.fit(texts, labels, traffic_texts=["where is my card please"])


def test_threshold_none_ignores_traffic_and_labelled_questions_are_not_traffic(hashing_encoder: Any) -> None:
    texts, labels = toy_rows()
    plain = split_fit(hashing_encoder, texts, labels, None)
    off = split_fit(hashing_encoder, texts, labels, ["where is my card please"], threshold=None)
    assert "self_training" not in off.manifest["training"]
    assert off.manifest["data_hash"] == plain.manifest["data_hash"]
    repeated = [texts[0], texts[0], texts[1], "where is my card please", "where is my card please"]
    on = split_fit(hashing_encoder, texts, labels, repeated, threshold=0.5)
    assert on.manifest["training"]["self_training"]["traffic_rows"] == 1  # labelled and repeated ones out


def test_out_of_scope_is_never_a_pseudo_label(hashing_encoder: Any) -> None:
    texts, labels = toy_rows()
    oos = ["tell me a joke", "what is the weather", "sing me a song", "who won the game", "recipe for soup"]
    texts, labels = texts + oos, labels + [OUT_OF_SCOPE] * len(oos)
    traffic = ["tell me a joke please", "what is the weather today", "where is my card please"]
    plain = split_fit(hashing_encoder, texts, labels, None)
    probabilities, _, _ = plain.predict_proba(traffic)
    assert [plain.labels[i] for i in probabilities.argmax(1)] == [OUT_OF_SCOPE, OUT_OF_SCOPE, "card_arrival"]
    # Threshold 0: every traffic question passes it; only the out-of-scope ones are left out.
    engine = split_fit(hashing_encoder, texts, labels, traffic, threshold=0.0)
    assert engine.manifest["training"]["self_training"]["pseudo_labelled"] == 1


def test_an_off_topic_log_question_is_never_a_pseudo_label(hashing_encoder: Any) -> None:
    """However sure the model is of it, a log question less familiar than the held-out rows (no word of any
    example here) teaches nothing: it is off the knowledge base's topic."""
    texts, labels = toy_rows()
    traffic = ["xylophone aardvark telescope", "where is my card please"]
    engine = split_fit(hashing_encoder, texts, labels, traffic, threshold=0.0)
    summary = engine.manifest["training"]["self_training"]
    assert (summary["pseudo_labelled"], summary["unfamiliar_left_out"]) == (1, 1)
    without = split_fit(hashing_encoder, texts, labels, traffic, threshold=0.0, familiarity_quantile=0.0)
    summary = without.manifest["training"]["self_training"]
    assert (summary["pseudo_labelled"], summary["unfamiliar_left_out"]) == (2, 0)
