"""Where the contrastive fine-tuning stage spends its time, on the device it runs on (issue 6's GPU goal).

On the rows bench/fine_tune.py --shots 0 fine-tunes on (BANKING77 train less the calibration hold-out), it
times the imports once (torch, sentence-transformers, the trainer), then for each variant of the trainer's
settings one ``fine_tune_encoder`` call of --steps steps: the whole call, its training loop, and the median
step (the device synchronised at every step end; the first --warmup steps left out). The first variant also
runs --profile-steps steps under torch.profiler: the ops with the most CPU time and the most device time, and
how busy the device was.

    python bench/trainer_profile.py --encoder DIR --data DIR [--steps 120] [--variants recipe fp32_tf32]

Writes trainer_profile.json (and the profiler's tables) to --out (default bench/results). A diagnosis, not a
recipe: the variants change speed, and some would change accuracy (batch_64), which bench/recipe_validate.py
must judge before the recipe takes one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from self_training import DEFAULT_DATA  # noqa: E402  (bench/ is the script's folder; HELPLOOP_BANKING77_DIR)

from bot.encoders import DEFAULT_ENCODER  # noqa: E402

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (FineTuneConfig changes, SentenceTransformerTrainingArguments overrides)
    "recipe": ({}, {}),
    "fp32_tf32": ({}, {"bf16": False, "fp16": False, "tf32": True}),
    "workers_2": ({}, {"dataloader_num_workers": 2, "dataloader_persistent_workers": True}),
    "batch_64": ({"batch_size": 64}, {}),
    # On a CPU with bf16 instructions the recipe trains under bf16 autocast (FineTuneConfig.cpu_bf16); this
    # is fp32 there. Session 33, 2 cores with avx512_bf16, 40 steps: median 1,851 ms a step in fp32, 1,219
    # ms in bf16.
    "cpu_fp32": ({"cpu_bf16": False}, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    started = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformerTrainer  # noqa: F401  (timed: the worker pays it)
    from transformers import TrainerCallback

    from core.kb_files import read_labelled_csv
    from training.finetune import FineTuneConfig, calibration_split, device, fine_tune_encoder

    imports = time.perf_counter() - started
    cuda = device() == "cuda"

    def synchronise() -> None:
        if cuda:
            torch.cuda.synchronize()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.begin = self.end = 0.0

        def on_train_begin(self, *_args: Any, **_kwargs: Any) -> None:
            synchronise()
            self.begin = time.perf_counter()

        def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
            synchronise()
            self.ends.append(time.perf_counter())

        def on_train_end(self, *_args: Any, **_kwargs: Any) -> None:
            self.end = time.perf_counter()

    class Profile(TrainerCallback):
        """torch.profiler over steps [first, first + count) of the loop."""

        def __init__(self, first: int, count: int) -> None:
            self.first, self.count = first, count
            self.profiler: Any = None
            self.tables: dict[str, str] = {}
            self.wall = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **_kwargs: Any) -> None:
            if state.global_step == self.first:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if cuda:
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                synchronise()
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.__enter__()
                self.wall = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_kwargs: Any) -> None:
            if self.profiler is not None and state.global_step == self.first + self.count:
                synchronise()
                self.wall = time.perf_counter() - self.wall
                self.profiler.__exit__(None, None, None)
                averages = self.profiler.key_averages()
                self.tables["cpu"] = averages.table(sort_by="self_cpu_time_total", row_limit=25)
                device_key = "self_device_time_total"
                if cuda:
                    self.tables["device"] = averages.table(sort_by=device_key, row_limit=25)
                    # Kernels only: an op's row repeats the time of the kernels it launched.
                    busy = (
                        sum(
                            getattr(e, device_key, 0.0)
                            for e in averages
                            if e.device_type != torch.autograd.DeviceType.CPU
                            and not getattr(e, "is_user_annotation", False)
                        )
                        / 1e6
                    )
                    self.tables["busy"] = f"device busy {busy:.3f} s of {self.wall:.3f} s wall"
                self.profiler = None

    texts, labels = read_labelled_csv(args.data / "train.csv")
    train_index, _held = calibration_split(labels, FineTuneConfig().calibration_share, 0)
    rows = [texts[i] for i in train_index], [labels[i] for i in train_index]
    results: dict[str, Any] = {"device": device(), "imports_s": round(imports, 2), "steps": args.steps}
    if cuda:
        results["gpu"] = torch.cuda.get_device_name(0)
    print(f"imports {imports:.1f} s on {device()}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for position, name in enumerate(args.variants):
        changes, options = VARIANTS[name]
        config = FineTuneConfig(**{"epochs": 1.0, "max_steps": args.steps, **changes})
        timer = StepTimer()
        callbacks: list[Any] = [timer]
        profile = None
        if position == 0 and args.profile_steps > 0:
            profile = Profile(args.warmup, args.profile_steps)
            callbacks.append(profile)
        with tempfile.TemporaryDirectory(prefix="helploop-trainer-profile-") as out_dir:
            begin = time.perf_counter()
            fine_tune_encoder(
                args.encoder,
                *rows,
                Path(out_dir) / "encoder",
                config,
                progress=False,
                callbacks=callbacks,
                trainer_options=options,
            )
            call = time.perf_counter() - begin
        steps = [b - a for a, b in zip([timer.begin, *timer.ends], timer.ends, strict=False)]
        settled = steps[args.warmup :] or steps
        median = statistics.median(settled)
        results[name] = {
            "call_s": round(call, 2),
            "loop_s": round(timer.end - timer.begin, 2),
            "outside_loop_s": round(call - (timer.end - timer.begin), 2),
            "first_step_s": round(steps[0], 3),
            "median_step_ms": round(1000 * median, 1),
            "steps_per_s": round(1 / median, 1),
            "batch_size": config.batch_size,
            "options": options,
        }
        if profile is not None:
            for kind, table in profile.tables.items():
                (args.out / f"trainer_profile_{kind}.txt").write_text(table + "\n")
            results[name]["profiled_wall_s"] = round(profile.wall, 3)
            print(profile.tables.get("busy", ""), flush=True)
        print(f"{name}: {results[name]}", flush=True)
    (args.out / "trainer_profile.json").write_text(json.dumps(results, indent=2))
    print(f"{'variant':<12} {'call s':>7} {'loop s':>7} {'outside':>8} {'ms/step':>8} {'steps/s':>8}")
    for name in args.variants:
        r = results[name]
        print(
            f"{name:<12} {r['call_s']:>7} {r['loop_s']:>7} {r['outside_loop_s']:>8} "
            f"{r['median_step_ms']:>8} {r['steps_per_s']:>8}"
        )


if __name__ == "__main__":
    main()
