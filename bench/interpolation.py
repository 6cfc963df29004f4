"""WiSE-FT (FineTuneConfig.interpolation) on the validation split: is the fine-tuned encoder better mixed back
with the pretrained one?

Per seed, as ``bench/self_training.py --validate``: 3,000 rows of BANKING77 train are held out as the
evaluation set and N shots per intent are drawn from the rest (never the test split). The encoder is
fine-tuned once on the shots outside the calibration split (as a fine-tuning run does), then each variant is
an engine calibrated on the held-out 15 % and refitted on all shots:
- ``tuned``: the fine-tuned weights as they are (interpolation 1.0, the default);
- ``interpolated_S``: S x tuned + (1 - S) x pretrained weights, for each share S;
- ``tuned_plus_frozen`` / ``interpolated_S_plus_frozen``: the same plus the pretrained encoder as a second
  encoder of the ensemble (bot.engine.add_encoder: twice the encoding cost when serving).

    .venv/bin/python bench/interpolation.py [--shares 0.65] [--seeds 0 1 2] [--encoder NAME]

Prints one line per seed and variant (accuracy, ECE, coverage at 99 % precision) and the means; writes
bench/results/interpolation_validate[_ENCODER].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from self_training import (  # noqa: E402
    figures_line,
    seed_means,
    seeded_arguments,
    validation_figures,
    validation_split,
)

from bot.encoders import DEFAULT_ENCODER, resolve_encoder_path  # noqa: E402
from bot.engine import AnsweringEngine, EngineConfig, add_encoder  # noqa: E402
from bot.evaluation import ClassificationEvaluator, sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from training.finetune import (  # noqa: E402
    FineTuneConfig,
    calibration_split,
    fine_tune_encoder,
    fit_calibrated_on_held_out,
    interpolate_weights,
)


def main() -> None:
    parser = seeded_arguments(__doc__)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.65])
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    train = read_labelled_csv(args.data / "train.csv")
    source = str(resolve_encoder_path(args.encoder))
    rows: dict[int, dict[str, dict[str, float]]] = {}
    for seed in args.seeds:
        pool, evaluation = validation_split(train, seed)
        few = sample_shots(*pool, shots=args.shots, seed=seed)
        base = EngineConfig(seed=seed, encoder={**EngineConfig().encoder, "source": args.encoder})
        tuning = FineTuneConfig(seed=seed)
        split = calibration_split(few[1], tuning.calibration_share, seed)
        work = Path(tempfile.mkdtemp(prefix="helploop-interpolation-"))
        started = time.perf_counter()
        tuned = fine_tune_encoder(
            source,
            [few[0][i] for i in split[0]],
            [few[1][i] for i in split[0]],
            work / "tuned",
            tuning,
            progress=False,
        )
        print(f"seed {seed}: fine-tuned in {time.perf_counter() - started:.0f}s", flush=True)
        pretrained = SentenceTransformer(source, device="cpu").state_dict()
        encoders = {"tuned": tuned}
        for share in args.shares:
            model = SentenceTransformer(str(tuned), device="cpu")
            interpolate_weights(model, pretrained, share)
            model.save(str(work / f"interpolated_{share:g}"))
            encoders[f"interpolated_{share:g}"] = work / f"interpolated_{share:g}"
        rows[seed] = {}
        for name, path in encoders.items():
            for frozen in (False, True):
                config = EngineConfig.from_dict(
                    {**base.__dict__, "encoder": {**base.encoder, "source": str(path)}}
                )
                if frozen:
                    config = add_encoder(config, source, name="frozen")
                engine = fit_calibrated_on_held_out(AnsweringEngine(config), *few, split, progress=False)
                result = ClassificationEvaluator(*evaluation, latency_samples=0).compute(engine)
                variant = f"{name}_plus_frozen" if frozen else name
                rows[seed][variant] = validation_figures(result)
                print(f"seed {seed} {variant:<30} " + figures_line(rows[seed][variant]), flush=True)
        shutil.rmtree(work, ignore_errors=True)
        means = write(args, rows)  # after every seed: a stopped run keeps the seeds it finished
    for variant, figures in means.items():
        print(f"mean {variant:<30} " + figures_line(figures))


def write(args: argparse.Namespace, rows: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    means = seed_means(rows)
    suffix = "" if args.encoder == DEFAULT_ENCODER else "_" + Path(args.encoder).name
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"interpolation_validate{suffix}.json").write_text(
        json.dumps(
            {
                "scored_on": "3,000 rows held out of BANKING77 train (bench/self_training.validation_split)",
                "shots": args.shots,
                "encoder": args.encoder,
                "shares": args.shares,
                "per_seed": rows,
                "mean": means,
            },
            indent=2,
        )
    )
    return means


if __name__ == "__main__":
    main()
