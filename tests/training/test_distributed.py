"""The data-parallel path, on CPU: torchrun starts two processes that train together over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES


def test_torchrun_two_processes_fine_tune_together(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "model"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "-m",
            "training.finetune_cli",
            "--data",
            str(FIXTURES / "banking77_small" / "train.csv"),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "16",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2 done" in result.stdout and "rank 1 of 2 done" in result.stdout
    record = json.loads((out / "helploop_training.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 2 and record["device"] == "cpu"
    assert (out / "modules.json").is_file()  # one process (rank 0) wrote a loadable model
