"""The default engine with the real MiniLM encoder on the committed 12-intent BANKING77 subset."""

from pathlib import Path
from typing import Any

import numpy as np

from bot.engine import ANSWERED, AnsweringEngine
from bot.evaluation import ClassificationEvaluator


def test_default_engine_accuracy_floor(small_engine: Any, small_banking: dict[str, Any]) -> None:
    result = ClassificationEvaluator(*small_banking["test"], latency_samples=10).compute(small_engine)
    # 15 examples per intent; the bare frozen-encoder + logistic-regression baseline gets 0.90 here.
    assert result["accuracy"] >= 0.9
    assert result["ece"] < 0.12
    gate = result["gate"]
    assert gate["coverage"] >= 0.5
    assert gate["precision"] >= 0.93


def test_answers_a_clear_question(small_engine: Any) -> None:
    prediction = small_engine.predict("My new card still hasn't been delivered, where is it?")
    assert prediction.ranking[0].intent in {"card_arrival", "card_delivery_estimate"}
    assert prediction.status in {ANSWERED, "clarify"}


def test_onnx_int8_encoder_agrees_with_torch(
    small_engine: Any, small_banking: dict[str, Any], tmp_path: Path, minilm_encoder: Any
) -> None:
    small_engine.save(tmp_path / "bundle")
    small_engine.bundle_dir = tmp_path / "bundle"
    path = small_engine.export_onnx()
    assert path.name == "model_int8.onnx" and path.stat().st_size < 40_000_000
    onnx_engine = AnsweringEngine.load(tmp_path / "bundle", runtime="auto")
    assert onnx_engine.runtime == "onnx"
    texts, labels = small_banking["test"]
    torch_vectors = minilm_encoder.encode(texts[:40])
    onnx_vectors = onnx_engine.encoders["minilm"].encode(texts[:40])
    cosine = np.sum(torch_vectors * onnx_vectors, axis=1)
    assert cosine.min() > 0.95 and cosine.mean() > 0.98
    torch_top = [p.ranking[0].intent for p in small_engine.predict_batch(texts)]
    onnx_top = [p.ranking[0].intent for p in onnx_engine.predict_batch(texts)]
    assert np.mean(np.array(torch_top) == np.array(onnx_top)) >= 0.95
