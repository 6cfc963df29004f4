#!/usr/bin/env bash
# The GPU check for issue 6, in one call on a lent device machine (prepare first: scripts/gpu_prepare.sh).
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# Full BANKING77 training set, fine-tuned (contrastive 1 epoch) and evaluated, timed end to end (goal:
# <= 60 s with evaluation); then 10-shot seeds 0-2 with the default recipe. Results land in $OUT
# (fine_tune_full_helploop-minilm-fp32.json, fine_tune_helploop-minilm-fp32.json, the logs, the GPU's name).
# GPU_CHECK_QUICK=1 runs a tiny version (also on CPU, with PYTHON=.venv/bin/python) to check the wiring
# before spending device time; GPU_CHECK_FULL_ONLY=1 stops after the timed full set; GPU_CHECK_PROFILE=1
# runs the full set under cProfile first (full.prof, profile.txt); GPU_CHECK_TRAINER=1 runs only
# bench/trainer_profile.py (TRAINER_ARGS: its options). Session 31 on an H200: 138 s for both parts, 460 s in
# all with bench/recipe_validate.py runs after them; session 32: profile + timed full set 194 s, trainer
# profile 116 s, each with the install; session 33: the timed full set twice, 110 s in all (README, "On a
# GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-/tmp/helploop-gpu-check}"
mkdir -p "$OUT"
if [ -d .gpu/wheels ] && [ "$PYTHON" = python3 ]; then
  # Byte-compiled at install, as any pip install is: the timed runs should not compile transformers' source.
  # Installed once per machine: a second run in the same call reuses it.
  [ -d /tmp/site/sentence_transformers ] || "$PYTHON" -m pip install -q --no-index --no-deps --no-cache-dir \
    --upgrade --target /tmp/site .gpu/wheels/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi: CPU") \
  | tee "$OUT/device.txt"
encoder=/tmp/helploop-minilm-fp32
[ -d "$encoder" ] || "$PYTHON" - "$encoder" <<'PYTHON'
import sys

from sentence_transformers import SentenceTransformer

SentenceTransformer(".gpu/minilm", device="cpu").float().save(sys.argv[1])  # carried as fp16, trained in fp32
PYTHON
common=(--encoder "$encoder" --data .gpu/banking77 --out "$OUT")
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  "$PYTHON" bench/fine_tune.py --shots 3 --seeds 0 --epochs 0.2 "${common[@]}" 2>&1 | tee "$OUT/quick.log"
  exit 0
fi
if [ "${GPU_CHECK_TRAINER:-0}" = 1 ]; then  # the contrastive trainer alone: per-step time, variants, profiler
  # shellcheck disable=SC2086  # TRAINER_ARGS: more options, e.g. "--variants recipe"
  "$PYTHON" bench/trainer_profile.py --encoder "$encoder" --data .gpu/banking77 --out "$OUT" ${TRAINER_ARGS:-} \
    > "$OUT/trainer.log" 2>&1
  grep -E "^(imports|device busy|variant|recipe|fp32|workers|batch)" "$OUT/trainer.log" || tail -20 "$OUT/trainer.log"
  exit 0
fi
if [ "${GPU_CHECK_PROFILE:-0}" = 1 ]; then  # where the full set's time goes: cProfile, then the timed run
  "$PYTHON" -m cProfile -o "$OUT/full.prof" bench/fine_tune.py --shots 0 --seeds 0 --epochs 1 "${common[@]}" \
    > "$OUT/profile.log" 2>&1
  "$PYTHON" - "$OUT/full.prof" > "$OUT/profile.txt" <<'PYTHON'
import pstats
import sys

stats = pstats.Stats(sys.argv[1])
stats.sort_stats("cumulative").print_stats(90)
stats.sort_stats("tottime").print_stats(40)
PYTHON
  grep -E "train_runtime|seed 0" "$OUT/profile.log" || true
fi
start=$(date +%s)
"$PYTHON" bench/fine_tune.py --shots 0 --seeds 0 --epochs 1 "${common[@]}" 2>&1 | tee "$OUT/full.log"
echo "full set, fine-tune + evaluation: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/full.log"
[ "${GPU_CHECK_FULL_ONLY:-0}" = 1 ] && exit 0  # the timed full set alone (a re-measure on little device time)
"$PYTHON" bench/fine_tune.py --shots 10 --seeds 0 1 2 --epochs 6 "${common[@]}" 2>&1 | tee "$OUT/shots.log"
