"""Fine-tuning the transformer members, through the libraries' own trainers.

Recipe (one run), two stages on the same encoder:
  1. model: the configured encoder (package or directory); CUDA with mixed precision when present (attention
     on any kernel but cuDNN's: ``attention_kernels``), else CPU;
  2. contrastive stage (sentence-transformers' ``SentenceTransformerTrainer``): pairs of questions of the same
     intent (anchor, positive), optionally with one hard negative mined from the most similar questions of
     other (confusable) intents, no duplicate texts within a batch; every other pair in the batch is a
     negative; MultipleNegativesRankingLoss (BatchAllTripletLoss on label-grouped batches is the alternative);
  3. classification stage (Hugging Face ``Trainer``), opt-in (``head_epochs`` > 0): a linear head over the
     normalised sentence embedding, initialised from logistic regression on the current embeddings (so it
     starts from the frozen solution instead of from noise), trained with the encoder by cross-entropy with
     label smoothing;
  4. save the encoder and the head (``helploop_head.npz``); the head becomes the ``tuned_head`` member and the
     encoder feeds every other member, so serving still runs one transformer forward pass per message.

Default recipe, measured on a validation split of BANKING77 train (10 examples per intent, seed 0; never the
test split): frozen engine 85.4 %; contrastive 6 epochs 85.8 % (coverage at 99 % precision 42 -> 53 %);
contrastive 6 + classification 10 epochs 83.9 %; classification 10 epochs alone 83.4 %; contrastive 6 with
mined hard negatives 84.2 %. Cross-entropy pulls
the embedding toward the head and away from what logistic regression and nearest-neighbour retrieval need,
so the classification stage is off by default on this evidence (CPU, few-shot); it stays one option away.

Calibration stays honest: ``fit_engine_with_fine_tuning`` holds out a stratified slice that neither the
encoder nor the members see, fits the combiner and the gate on it, then refits the members on all rows.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bot.encoders import resolve_encoder_path
from bot.engine import AnsweringEngine, EngineConfig, IntentInfo, ProgressCallback

log = logging.getLogger("helploop.training.finetune")
LossCallback = Callable[[float, float], None]  # (fraction done, loss)


@dataclass
class FineTuneConfig:
    epochs: float = 6.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_steps: int = -1
    seed: int = 0
    calibration_share: float = 0.15
    # "batch_all_triplet" (sentences grouped by intent) or "multiple_negatives" (question pairs of one intent,
    # every other pair in the batch a negative).
    loss: str = "multiple_negatives"
    # multiple_negatives: which in-batch comparisons the loss makes (sentence-transformers' `directions`),
    # comma-separated: query_to_doc (each question against every pair's second question: the classic
    # InfoNCE), doc_to_query, query_to_query, doc_to_doc (GTE's "improved" contrastive loss uses all four).
    # Batches that never hold two pairs of one intent make every such comparison a true negative.
    contrastive_directions: str = "query_to_doc"
    contrastive_scale: float = 20.0  # 1 / temperature of the contrastive softmax
    # Contrastive stage: one hard negative per pair, drawn from the `hard_negative_pool` questions of *other*
    # intents most similar to the anchor (the confusable intents), on top of the in-batch negatives. Off by
    # default: 84.2 % against 85.8 % without, on the validation split (10-shot, seed 0).
    hard_negatives: bool = False
    hard_negative_pool: int = 3
    # Contrastive stage: no two pairs of one intent in a batch. Otherwise the other pair's texts are in-batch
    # "negatives" that are really positives (with 77 intents and batches of 32, about 6 such pairs a batch).
    # BANKING77 10-shot, MiniLM, 3,000 validation rows of train, seeds 0-2: 85.10 / 86.03 / 85.20 % with,
    # 84.70 / 86.07 / 85.00 % without (mean +0.18 points: small, but never a false negative).
    distinct_intents_per_batch: bool = True
    # Contrastive stage: draw each anchor's positive afresh for every epoch (the epochs' pairs are built up
    # front and trained as one pass over all of them: same steps), instead of one positive for all epochs.
    # BANKING77 10-shot, MiniLM, 3,000 validation rows of train, seeds 0-2: 85.70 / 86.60 / 85.93 % with,
    # 85.10 / 86.03 / 85.20 % without (mean +0.64 points, every seed up; ECE 0.011-0.014 either way).
    fresh_positives: bool = True
    # Weight-space ensembling (WiSE-FT, Wortsman et al., CVPR 2022): after the contrastive stage the encoder's
    # weights become ``interpolation`` x tuned + (1 - interpolation) x pretrained. 1.0: the tuned weights as
    # they are. Free at serving time (still one encoder).
    interpolation: float = 1.0
    # Classification stage (0 epochs: skip it).
    head_epochs: float = 0.0
    head_learning_rate: float = 5e-5
    head_batch_size: int = 16
    label_smoothing: float = 0.1
    max_length: int = 64
    # Mixed precision (bf16 autocast) on a CPU with bf16 instructions (avx512_bf16 or AMX; fp32 elsewhere).
    # Under CUDA the trainers always use bf16 (fp16 where the GPU lacks it). BANKING77 10-shot, MiniLM, 3,000
    # validation rows of train, seeds 0-2, 2 cores with avx512_bf16: 87.27 / 84.60 / 85.90 % against
    # 87.30 / 84.67 / 85.90 % in fp32 (mean -0.04 points), coverage at 99 % precision 51.5 % either way, the
    # fit 131-145 s against 198-230 s (bench/results/recipe_validate_cpu_bf16_True.json).
    cpu_bf16: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FineTuneConfig:
        data = data or {}
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


Direction = Literal["query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc"]
DIRECTIONS: tuple[Direction, ...] = ("query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc")


def contrastive_directions(config: FineTuneConfig) -> tuple[Direction, ...]:
    """``config.contrastive_directions`` as the loss takes it; query_to_doc always comes first (the loss needs
    it: it holds the paired positive)."""
    named = [part.strip() for part in config.contrastive_directions.split(",") if part.strip()]
    unknown = sorted(set(named) - set(DIRECTIONS))
    if unknown:
        raise ValueError(
            f"contrastive_directions: unknown {', '.join(unknown)}; choose from {', '.join(DIRECTIONS)}"
        )
    return tuple(d for d in DIRECTIONS if d in named or d == "query_to_doc")


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def preload_trainer() -> float:
    """Import the training stack (torch, datasets, sentence-transformers' and Hugging Face's trainers) and
    return the seconds it took. A fine-tuning run pays these imports once per process: 8.5-15 s on the
    H200 machines (torch.distributed, sympy, peft come with them), 5 s on a 2-core CPU machine.
    ``helploop worker`` pays them when it starts rather than in its first run, and the benches time them
    apart from the fit."""
    started = time.perf_counter()
    try:
        import datasets  # noqa: F401
        import sentence_transformers.sentence_transformer.losses  # noqa: F401
        import sentence_transformers.sentence_transformer.training_args  # noqa: F401
        import torch  # noqa: F401
        from sentence_transformers import SentenceTransformerTrainer  # noqa: F401
        from transformers import Trainer, TrainingArguments  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            f"fine-tuning needs {exc.name}: `.venv/bin/python -m pip install -r requirements.txt`"
        ) from None
    return time.perf_counter() - started


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX tiles); without them torch emulates it
    and bf16 runs slower than fp32."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _torchrun_process() -> bool:
    """One of several processes started by torchrun (data-parallel training)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def mixed_precision(cuda: bool, config: FineTuneConfig) -> dict[str, Any]:
    """The trainers' precision arguments: bf16 (fp16 without it) under CUDA; on the CPU, bf16 where the
    recipe asks for it and the CPU has it (``use_cpu`` with it: the trainer refuses bf16 without a GPU
    otherwise), fp32 elsewhere. Processes under torchrun on the CPU (gloo) stay in fp32: there, with
    ``use_cpu``, the classification stage ran 0 steps in the two-process test (not root-caused)."""
    import torch

    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    if config.cpu_bf16 and not _torchrun_process() and cpu_has_bf16():
        return {"bf16": True, "fp16": False, "use_cpu": True}
    return {"bf16": False, "fp16": False}


@contextlib.contextmanager
def attention_kernels(cuda: bool) -> Iterator[None]:
    """Training under CUDA mixed precision: scaled-dot-product attention by any kernel but cuDNN's. cuDNN
    builds an execution plan for each new (batch, length) shape, and question batches come padded to ever
    new lengths: on an H200 its attention took 12-15 ms of CPU a call against 0.03 ms on the device, and
    120 steps of MiniLM 34 s cold (bench/trainer_profile.py). The memory-efficient kernel takes the padding
    mask and needs no plan. On the CPU (or in float32) cuDNN's kernel is never chosen: nothing changes."""
    if not cuda:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def fine_tune_encoder(
    source: str,
    texts: Sequence[str],
    labels: Sequence[str],
    out_dir: str | Path,
    config: FineTuneConfig,
    *,
    on_loss: LossCallback | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    trainer_options: dict[str, Any] | None = None,
) -> Path:
    """Fine-tune ``source`` on (text, intent) rows (the module's recipe) and save it to ``out_dir``.
    ``callbacks`` (more transformers ``TrainerCallback``s) and ``trainer_options`` (overrides of the
    contrastive stage's ``SentenceTransformerTrainingArguments``) are for measuring the trainer
    (bench/trainer_profile.py); a training run passes neither."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from datasets import Dataset
    except ImportError:
        raise RuntimeError(
            "fine-tuning needs `datasets`: `.venv/bin/python -m pip install -r requirements.txt`"
        ) from None
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

    if not 0.0 <= config.interpolation <= 1.0:
        raise ValueError(f"interpolation must be from 0 to 1, not {config.interpolation}")
    target = device()
    model = SentenceTransformer(str(resolve_encoder_path(source)), device=target)
    pretrained = (
        {name: value.detach().clone() for name, value in model.state_dict().items()}
        if config.interpolation < 1.0
        else None
    )
    label_ids = {label: i for i, label in enumerate(sorted(set(labels)))}
    loss: Any
    rounds = 1  # passes of freshly drawn pairs (fresh_positives), trained as one pass over them all
    if config.loss == "multiple_negatives":
        rounds = max(1, math.ceil(config.epochs)) if config.fresh_positives else 1
        anchors, positives, anchor_labels = contrastive_pairs(texts, labels, rounds=rounds, seed=config.seed)
        if not anchors:
            raise ValueError(
                f"fine-tuning pairs two questions of one intent, and none of the {len(set(labels))} intents "
                f"has two distinct examples left once the calibration rows are held out ({len(texts)} "
                "rows): add examples, or train without fine-tuning"
            )
        columns = {"anchor": anchors, "positive": positives}
        if config.hard_negatives:
            columns["negative"] = mine_hard_negatives(
                model, anchors, anchor_labels, texts, labels, top=config.hard_negative_pool, seed=config.seed
            )
        dataset = Dataset.from_dict(columns)
        loss = MultipleNegativesRankingLoss(
            model, scale=config.contrastive_scale, directions=contrastive_directions(config)
        )
        sampler: Any = (
            functools.partial(DistinctIntentBatchSampler, intents=anchor_labels)
            if config.distinct_intents_per_batch
            else BatchSamplers.NO_DUPLICATES
        )
    elif config.loss == "batch_all_triplet":
        dataset = Dataset.from_dict({"sentence": list(texts), "label": [label_ids[x] for x in labels]})
        loss = BatchAllTripletLoss(model)
        sampler = BatchSamplers.GROUP_BY_LABEL
    else:
        raise ValueError(f"unknown fine-tuning loss {config.loss!r}")
    cuda = target == "cuda"
    scratch = tempfile.mkdtemp(prefix="helploop-finetune-")
    options: dict[str, Any] = {
        "output_dir": scratch,
        "num_train_epochs": config.epochs / rounds,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a share of the steps (transformers v5)
        **mixed_precision(cuda, config),
        "batch_sampler": sampler,
        "seed": config.seed,
        "save_strategy": "no",
        "logging_steps": 1 if 0 < config.max_steps <= 10 else 5,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_drop_last": False,
        # Under torchrun on CPU the processes talk over gloo (NCCL needs GPUs).
        "ddp_backend": "gloo" if not cuda and _torchrun_process() else None,
    }
    args = SentenceTransformerTrainingArguments(**{**options, **(trainer_options or {})})

    head_share = 0.0
    if config.head_epochs > 0:
        contrastive_steps = _steps(len(dataset), config.batch_size, config.epochs / rounds)
        head_steps = _steps(len(texts), config.head_batch_size, config.head_epochs)
        head_share = head_steps / max(1, contrastive_steps + head_steps)

    class ReportLoss(TrainerCallback):
        def __init__(self, offset: float, share: float) -> None:
            self.offset, self.share = offset, share

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
        ) -> None:
            if on_loss is not None and logs and "loss" in logs and state.max_steps:
                fraction = self.offset + self.share * state.global_step / state.max_steps
                on_loss(fraction, float(logs["loss"]))

    world_size, parallel_mode, steps = 1, "not_parallel", 0
    if config.epochs > 0 or config.max_steps > 0:
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=loss,
            callbacks=[ReportLoss(0.0, 1.0 - head_share), *callbacks],
        )
        with attention_kernels(cuda):
            trainer.train()
        world_size, parallel_mode = args.world_size, str(args.parallel_mode)
        steps = trainer.state.global_step
    if pretrained is not None:
        interpolate_weights(model, pretrained, config.interpolation)
    head = None
    if config.head_epochs > 0:
        head, head_run = train_classification_head(
            model,
            texts,
            labels,
            config,
            scratch=scratch,
            callback=ReportLoss(1.0 - head_share, head_share),
            progress=progress,
        )
        world_size, parallel_mode = head_run["world_size"], head_run["parallel_mode"]
        steps += head_run["steps"]
    out = Path(out_dir)
    if _is_main_process():  # under torchrun every process trains, one writes
        if out.exists():
            shutil.rmtree(out)
        model.save(str(out))
        if head is not None:
            np.savez(out / HEAD_FILE, weight=head["weight"], bias=head["bias"], labels=head["labels"])
        (out / "helploop_training.json").write_text(
            json.dumps(
                {
                    "world_size": world_size,
                    "parallel_mode": parallel_mode,
                    "device": target,
                    "steps": steps,
                    "rows": len(texts),
                    "loss": config.loss,
                    "head_epochs": config.head_epochs,
                    "interpolation": config.interpolation,
                }
            )
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def interpolate_weights(model: Any, pretrained: dict[str, Any], share: float) -> None:
    """In place: every floating-point weight of ``model`` becomes ``share`` x its own + (1 - ``share``) x the
    same weight in ``pretrained`` (a state dict of the same architecture); integer buffers stay."""
    tuned = model.state_dict()
    missing = set(tuned) ^ set(pretrained)
    if missing:
        raise ValueError(f"the weights do not match the pretrained encoder's: {sorted(missing)[:3]}")
    model.load_state_dict(
        {
            name: share * value + (1.0 - share) * pretrained[name].to(value.device, value.dtype)
            if value.is_floating_point()
            else value
            for name, value in tuned.items()
        }
    )


def contrastive_pairs(
    texts: Sequence[str], labels: Sequence[str], *, rounds: int, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """(anchors, positives, anchor intents): each question with another question of its intent, ``rounds``
    times over, the positive drawn afresh each round. Questions alone in their intent have no pair."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in zip(texts, labels, strict=True):
        by_label[label].append(text)
    anchors, positives, anchor_labels = [], [], []
    for _ in range(rounds):
        for text, label in zip(texts, labels, strict=True):
            others = [t for t in by_label[label] if t != text]
            if others:
                anchors.append(text)
                positives.append(rng.choice(others))
                anchor_labels.append(label)
    return anchors, positives, anchor_labels


def _distinct_intent_batches(intents: Sequence[str], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle the rows, then fill each batch with rows of intents not yet in it (a row whose intent is
    already there waits for a later batch). Every row lands in exactly one batch."""
    order = np.random.default_rng(seed).permutation(len(intents)).tolist()
    batches: list[list[int]] = []
    while order:
        batch: list[int] = []
        seen: set[str] = set()
        waiting: list[int] = []
        for index in order:
            if len(batch) < batch_size and intents[index] not in seen:
                batch.append(index)
                seen.add(intents[index])
            else:
                waiting.append(index)
        batches.append(batch)
        order = waiting
    return batches


class DistinctIntentBatchSampler:
    """A batch sampler for the sentence-transformers trainer (it takes the class; the intents are bound
    with functools.partial): no intent twice in a batch, reshuffled each epoch."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: Any = None,
        seed: int = 0,
        *,
        intents: Sequence[str],
    ) -> None:
        if len(intents) != len(dataset):
            raise ValueError(f"{len(intents)} intents for {len(dataset)} rows")
        self.intents, self.batch_size, self.drop_last = list(intents), batch_size, drop_last
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        batches = _distinct_intent_batches(self.intents, self.batch_size, self.seed + self.epoch)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def mine_hard_negatives(
    model: Any,
    anchors: Sequence[str],
    anchor_labels: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    top: int = 3,
    seed: int = 0,
) -> list[str]:
    """For each anchor, a question of another intent that the current encoder finds close: one of the ``top``
    most similar (chosen at random among them, so that one mislabelled near-duplicate does not dominate)."""
    rng = np.random.default_rng(seed)
    label_of = dict(zip(texts, labels, strict=True))
    pool = list(label_of)
    pool_labels = np.array([label_of[t] for t in pool])
    encode = {"batch_size": 64, "normalize_embeddings": True, "show_progress_bar": False}
    pool_vectors = model.encode(pool, **encode)
    anchor_vectors = model.encode(list(anchors), **encode)
    negatives: list[str] = []
    for start in range(0, len(anchors), 1024):
        similarity = anchor_vectors[start : start + 1024] @ pool_vectors.T
        chunk_labels = np.array(anchor_labels[start : start + 1024])
        similarity[chunk_labels[:, None] == pool_labels[None, :]] = -np.inf
        take = min(top, len(pool) - 1)
        nearest = np.argpartition(-similarity, take - 1, axis=1)[:, :take]
        for row, candidates in enumerate(nearest):
            candidates = candidates[np.isfinite(similarity[row, candidates])]
            negatives.append(pool[int(rng.choice(candidates))])
    return negatives


HEAD_FILE = "helploop_head.npz"
LOSS_PREFIX = "HELPLOOP_LOSS"


def fine_tune_encoder_distributed(
    source: str,
    texts: Sequence[str],
    labels: Sequence[str],
    out_dir: str | Path,
    config: FineTuneConfig,
    *,
    processes: int,
    on_loss: LossCallback | None = None,
) -> Path:
    """The same two stages, data-parallel: ``torchrun`` starts ``processes`` workers (one per GPU, or CPU
    processes over gloo) running ``training.finetune_cli``; rank 0 streams its losses back and writes."""
    import csv
    import socket
    import subprocess
    import sys

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = out.parent / "finetune-data.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun) if torchrun.exists() else "torchrun",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "training.finetune_cli",
        "--data",
        str(data),
        "--out",
        str(out),
        "--encoder",
        source,
        "--config",
        json.dumps(config.__dict__),
        "--report-losses",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if device() == "cpu":
        env.setdefault("OMP_NUM_THREADS", "1")
    tail: list[str] = []
    with subprocess.Popen(
        command,
        cwd=str(Path(__file__).resolve().parent.parent),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            # stderr shares the pipe: a progress bar's carriage returns may precede the marker on a line
            _, marker, values = line.rpartition(LOSS_PREFIX)
            if marker:
                fraction, loss = values.split()[:2]
                if on_loss is not None:
                    on_loss(float(fraction), float(loss))
            else:
                tail = (tail + [line.rstrip()])[-40:]
        code = child.wait()
    if code != 0 or not (out / "modules.json").is_file():
        detail = "\n".join(tail[-15:])
        raise RuntimeError(f"data-parallel fine-tuning failed (torchrun exit {code}):\n{detail}")
    return out


def _steps(rows: int, batch_size: int, epochs: float) -> int:
    return int(math.ceil(rows / max(1, batch_size)) * epochs)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_classification_head(
    model: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    config: FineTuneConfig,
    *,
    scratch: str,
    callback: Any = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train a linear head with the encoder by cross-entropy, through the Hugging Face ``Trainer``.

    The head starts from logistic regression on the encoder's current embeddings. Returns the head as arrays
    (``weight``, ``bias``, ``labels``) and the run (world size, parallel mode, step count); ``model`` (a
    SentenceTransformer) is trained in place."""
    import torch
    from datasets import Dataset
    from sklearn.linear_model import LogisticRegression
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    embeddings = model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    start = LogisticRegression(C=10.0, max_iter=3000).fit(embeddings, y)
    weight, bias = start.coef_, start.intercept_
    if len(names) == 2:  # sklearn keeps one row for a binary problem
        weight, bias = np.vstack([-weight, weight]) / 2, np.array([-bias[0], bias[0]]) / 2

    class EncoderWithHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model
            self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
                self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

        def forward(
            self,
            input_ids: Any,
            attention_mask: Any,
            token_type_ids: Any = None,
            labels: Any = None,
        ) -> dict[str, Any]:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids
            embedding = torch.nn.functional.normalize(self.encoder(features)["sentence_embedding"], dim=-1)
            logits = self.head(embedding)
            loss = None
            if labels is not None:
                loss = torch.nn.functional.cross_entropy(
                    logits, labels, label_smoothing=config.label_smoothing
                )
            return {"loss": loss, "logits": logits}

    tokenizer = model.tokenizer
    encoded = tokenizer(list(texts), truncation=True, max_length=config.max_length)
    dataset = Dataset.from_dict({**encoded, "labels": y.tolist()})
    cuda = device() == "cuda"
    args = TrainingArguments(
        output_dir=str(Path(scratch) / "head"),
        num_train_epochs=config.head_epochs,
        per_device_train_batch_size=config.head_batch_size,
        learning_rate=config.head_learning_rate,
        warmup_steps=config.warmup_ratio,
        weight_decay=0.01,
        **mixed_precision(cuda, config),
        seed=config.seed,
        save_strategy="no",
        logging_steps=5,
        report_to="none",
        disable_tqdm=not progress,
        ddp_backend="gloo" if not cuda and _torchrun_process() else None,
    )
    network = EncoderWithHead()
    trainer = Trainer(
        model=network,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[callback] if callback is not None else None,
    )
    with attention_kernels(cuda):
        trainer.train()
    network.eval()
    head = {
        "weight": network.head.weight.detach().cpu().float().numpy(),
        "bias": network.head.bias.detach().cpu().float().numpy(),
        "labels": np.array(names),
    }
    run = {
        "world_size": args.world_size,
        "parallel_mode": str(args.parallel_mode),
        "steps": trainer.state.global_step,
    }
    return head, run


def calibration_split(labels: Sequence[str], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified hold-out: a share of each intent that has at least 4 examples (small intents keep all).
    When that holds nothing out (every intent has fewer than 4 examples), one example of each intent that has
    two or more. Raises ValueError when not even that is possible: the combiner needs held-out rows."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    shuffled: dict[str, list[int]] = {}
    for label, rows in by_label.items():  # the same draws as before the fallback existed: splits reproduce
        shuffled[label] = rows[:]
        rng.shuffle(shuffled[label])
    train, held = [], []
    for rows in shuffled.values():
        take = int(round(len(rows) * share)) if len(rows) >= 4 else 0
        held += rows[:take]
        train += rows[take:]
    if not held:
        train, held = [], []
        for rows in shuffled.values():
            take = 1 if len(rows) >= 2 else 0
            held += rows[:take]
            train += rows[take:]
    if not held:
        raise ValueError(
            "fine-tuning holds out examples to calibrate on, but every intent has a single example: "
            "add a second example to some intents, or train without fine-tuning"
        )
    return sorted(train), sorted(held)


def fit_calibrated_on_held_out(
    engine: AnsweringEngine,
    texts: Sequence[str],
    labels: Sequence[str],
    split: tuple[list[int], list[int]],
    **fit_options: Any,
) -> AnsweringEngine:
    """Fit on the split's training rows, fit the combiner and the gate on its held-out rows, then refit the
    members on every row (``calibration_split``; what fine-tuning and self-training need: labelled rows that
    nothing was fitted on). ``fit_options``: the rest of AnsweringEngine.fit's (knowledge, traffic, ...)."""
    train, held = split
    return engine.fit(
        [texts[i] for i in train],
        [labels[i] for i in train],
        calibration_texts=[texts[i] for i in held],
        calibration_labels=[labels[i] for i in held],
        refit_texts=list(texts),
        refit_labels=list(labels),
        **fit_options,
    )


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
    processes: int = 1,
    traffic_texts: Sequence[str] | None = None,
) -> AnsweringEngine:
    """Fine-tune the encoder on most rows, calibrate on held-out rows, refit the members on all rows.
    With extra encoders (bot.engine.add_encoder) each one is fine-tuned the same way, one after another.
    ``processes`` > 1 trains data-parallel under torchrun. ``traffic_texts``: unlabelled questions the
    members self-train on (AnsweringEngine.fit); the encoder is fine-tuned on the labelled rows only."""
    report = on_progress or (lambda _step, _fraction: None)
    train_index, held_index = calibration_split(labels, tuning.calibration_share, tuning.seed)
    train_texts, train_labels = [texts[i] for i in train_index], [labels[i] for i in train_index]
    report("fine-tune", 0.0)
    encoders = config.encoder_configs()
    members = [dict(m) for m in config.members]
    tuned_encoders: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any]] = {}
    for position, encoder in enumerate(encoders):
        name = str(encoder["name"])

        def loss_seen(fraction: float, loss: float, position: int = position) -> None:
            # One bar and one loss curve for the run: each encoder has its share of the fine-tuning step.
            overall = (position + fraction) / len(encoders)
            report("fine-tune", overall)
            if on_loss is not None:
                on_loss(overall, loss)

        out_dir = Path(work_dir) / ("encoder" if position == 0 else f"encoder-{name}")
        arguments = (str(encoder["source"]), train_texts, train_labels, out_dir, tuning)
        if processes > 1:
            encoder_dir = fine_tune_encoder_distributed(*arguments, processes=processes, on_loss=loss_seen)
        else:
            encoder_dir = fine_tune_encoder(*arguments, on_loss=loss_seen, progress=progress)
        tuned_encoders.append({**encoder, "source": str(encoder_dir)})
        record_file = encoder_dir / "helploop_training.json"
        records[name] = json.loads(record_file.read_text()) if record_file.is_file() else {}
        head_file = encoder_dir / HEAD_FILE
        if head_file.is_file():
            members.append(
                {
                    "kind": "tuned_head",
                    "name": "tuned_head" if position == 0 else f"tuned_head_{name}",
                    "encoder": name,
                    "weights": str(head_file),
                }
            )
    tuned = EngineConfig.from_dict(
        {
            **config.__dict__,
            "encoder": tuned_encoders[0],
            "extra_encoders": tuned_encoders[1:],
            "members": members,
        }
    )
    engine = fit_calibrated_on_held_out(
        AnsweringEngine(tuned, threads=threads),
        texts,
        labels,
        (train_index, held_index),
        knowledge=knowledge,
        traffic_texts=traffic_texts,
        progress=progress,
        on_progress=on_progress,
    )
    record = records[str(encoders[0]["name"])]
    engine.manifest["training"]["fine_tuning"] = {
        **tuning.__dict__,
        "device": device(),
        "encoder_rows": len(train_texts),
        "world_size": record.get("world_size", 1),
        "steps": record.get("steps"),
        # every encoder's own steps, the engine's own first
        "encoders": {name: r.get("steps") for name, r in records.items()},
    }
    return engine
