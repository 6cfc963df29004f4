"""Fine-tuning the bi-encoder with a contrastive loss, through sentence-transformers' own trainer.

Recipe (one run):
  1. model: the configured encoder (package or directory); CUDA with mixed precision when present, else CPU;
  2. data: pairs of questions of the same intent (anchor, positive), no duplicate texts within a batch;
  3. hard negatives: every other pair in the batch (other intents, often confusable ones) is a negative;
  4. loss: MultipleNegativesRankingLoss (BatchAllTripletLoss on label-grouped batches is the alternative);
  5. arguments -> trainer -> train (progress bar and loss go to the callback);
  6. save the fine-tuned model next to the bundle that will use it.

Calibration stays honest: ``fit_engine_with_fine_tuning`` holds out a stratified slice that neither the
encoder nor the members see, fits the combiner and the gate on it, then refits the members on all rows.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.encoders import resolve_encoder_path
from bot.engine import AnsweringEngine, EngineConfig, IntentInfo, ProgressCallback

log = logging.getLogger("helploop.training.finetune")
LossCallback = Callable[[float, float], None]  # (fraction done, loss)


@dataclass
class FineTuneConfig:
    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_steps: int = -1
    seed: int = 0
    calibration_share: float = 0.15
    # "batch_all_triplet" (sentences grouped by intent) or "multiple_negatives" (question pairs of one intent,
    # every other pair in the batch a negative).
    loss: str = "multiple_negatives"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FineTuneConfig:
        data = data or {}
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fine_tune_encoder(
    source: str,
    texts: Sequence[str],
    labels: Sequence[str],
    out_dir: str | Path,
    config: FineTuneConfig,
    *,
    on_loss: LossCallback | None = None,
    progress: bool = True,
) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from datasets import Dataset
    except ImportError:
        raise RuntimeError(
            "fine-tuning needs `datasets`: `.venv/bin/python -m pip install -r requirements.txt`"
        ) from None
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import (
        BatchAllTripletLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    target = device()
    model = SentenceTransformer(str(resolve_encoder_path(source)), device=target)
    label_ids = {label: i for i, label in enumerate(sorted(set(labels)))}
    loss: Any
    if config.loss == "multiple_negatives":
        rng = random.Random(config.seed)
        by_label: dict[str, list[str]] = defaultdict(list)
        for text, label in zip(texts, labels, strict=True):
            by_label[label].append(text)
        anchors, positives = [], []
        for text, label in zip(texts, labels, strict=True):
            others = [t for t in by_label[label] if t != text]
            if others:
                anchors.append(text)
                positives.append(rng.choice(others))
        dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
        loss = MultipleNegativesRankingLoss(model)
        sampler = BatchSamplers.NO_DUPLICATES
    elif config.loss == "batch_all_triplet":
        dataset = Dataset.from_dict({"sentence": list(texts), "label": [label_ids[x] for x in labels]})
        loss = BatchAllTripletLoss(model)
        sampler = BatchSamplers.GROUP_BY_LABEL
    else:
        raise ValueError(f"unknown fine-tuning loss {config.loss!r}")
    cuda = target == "cuda"
    scratch = tempfile.mkdtemp(prefix="helploop-finetune-")
    args = SentenceTransformerTrainingArguments(
        output_dir=scratch,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps (transformers v5)
        fp16=cuda and not torch.cuda.is_bf16_supported(),
        bf16=cuda and torch.cuda.is_bf16_supported(),
        batch_sampler=sampler,
        seed=config.seed,
        save_strategy="no",
        logging_steps=1 if 0 < config.max_steps <= 10 else 5,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_drop_last=False,
        # Under torchrun on CPU the processes talk over gloo (NCCL needs GPUs).
        ddp_backend="gloo" if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )

    class ReportLoss(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
        ) -> None:
            if on_loss is not None and logs and "loss" in logs and state.max_steps:
                on_loss(state.global_step / state.max_steps, float(logs["loss"]))

    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        callbacks=[ReportLoss()],
    )
    trainer.train()
    out = Path(out_dir)
    if trainer.is_world_process_zero():  # under torchrun every process trains, one writes
        if out.exists():
            shutil.rmtree(out)
        model.save(str(out))
        (out / "helploop_training.json").write_text(
            json.dumps(
                {
                    "world_size": args.world_size,
                    "parallel_mode": str(args.parallel_mode),
                    "device": target,
                    "steps": trainer.state.global_step,
                    "rows": len(texts),
                    "loss": config.loss,
                }
            )
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def calibration_split(labels: Sequence[str], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified hold-out: a share of each intent that has at least 4 examples (small intents keep all)."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    train, held = [], []
    for rows in by_label.values():
        rows = rows[:]
        rng.shuffle(rows)
        take = int(round(len(rows) * share)) if len(rows) >= 4 else 0
        held += rows[:take]
        train += rows[take:]
    return sorted(train), sorted(held)


def fit_engine_with_fine_tuning(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    config: EngineConfig,
    tuning: FineTuneConfig,
    work_dir: str | Path,
    knowledge: dict[str, IntentInfo] | None = None,
    threads: int | None = None,
    on_progress: ProgressCallback | None = None,
    on_loss: LossCallback | None = None,
    progress: bool = True,
) -> AnsweringEngine:
    """Fine-tune the encoder on most rows, calibrate on held-out rows, refit the members on all rows."""
    report = on_progress or (lambda _step, _fraction: None)
    train_index, held_index = calibration_split(labels, tuning.calibration_share, tuning.seed)
    train_texts, train_labels = [texts[i] for i in train_index], [labels[i] for i in train_index]
    report("fine-tune", 0.0)

    def loss_seen(fraction: float, loss: float) -> None:
        report("fine-tune", fraction)
        if on_loss is not None:
            on_loss(fraction, loss)

    encoder_dir = fine_tune_encoder(
        str(config.encoder["source"]),
        train_texts,
        train_labels,
        Path(work_dir) / "encoder",
        tuning,
        on_loss=loss_seen,
        progress=progress,
    )
    tuned = EngineConfig.from_dict(
        {**config.__dict__, "encoder": {**config.encoder, "source": str(encoder_dir)}}
    )
    engine = AnsweringEngine(tuned, threads=threads)
    engine.fit(
        train_texts,
        train_labels,
        knowledge=knowledge,
        calibration_texts=[texts[i] for i in held_index],
        calibration_labels=[labels[i] for i in held_index],
        refit_texts=list(texts),
        refit_labels=list(labels),
        progress=progress,
        on_progress=on_progress,
    )
    engine.manifest["training"]["fine_tuning"] = {
        **tuning.__dict__,
        "device": device(),
        "encoder_rows": len(train_texts),
    }
    return engine
