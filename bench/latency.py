"""Single-message latency: the engine's predict() against a bare encode() of the same text, same run.

One message at a time, warm, 2 threads, for both encoder runtimes (torch and ONNX int8). Uses the bundle
that bench/accuracy.py saved (bench/results/model, full BANKING77) or fits one on --data if it is missing.

    .venv/bin/python bench/latency.py [--model DIR] [--messages 300]
    .venv/bin/python bench/latency.py --model bench/results/model_all-mpnet-base-v2   # the large encoder

With several encoders (bench/accuracy.py --extra-encoder), "bare encode" is the text through each of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bot.engine import AnsweringEngine, EngineConfig  # noqa: E402
from bot.runtime import configure_inference_threads  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
TARGET_RATIO = 1.5


def percentiles(samples: list[float]) -> dict[str, float]:
    array = np.array(samples)
    return {
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
        "mean_ms": float(array.mean()),
    }


def measure(engine: AnsweringEngine, messages: list[str]) -> dict[str, Any]:
    encoders = engine.all_encoders()  # "bare encode": the text through every encoder of the ensemble
    for text in messages[:20]:  # warm up both paths
        for encoder in encoders:
            encoder.encode([text])
        engine.predict(text)
    encode_times, predict_times = [], []
    for text in messages:  # interleaved, so machine noise hits both alike
        started = time.perf_counter()
        for encoder in encoders:
            encoder.encode([text])
        encode_times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        engine.predict(text)
        predict_times.append((time.perf_counter() - started) * 1000)
    encode, predict = percentiles(encode_times), percentiles(predict_times)
    return {
        "encode": encode,
        "predict": predict,
        "ratio_p50": predict["p50_ms"] / encode["p50_ms"],
        "ratio_p99": predict["p99_ms"] / encode["p99_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "bench" / "results" / "model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    test_texts, _ = read_labelled_csv(args.data / "test.csv")
    rng = np.random.default_rng(0)
    messages = [test_texts[i] for i in rng.choice(len(test_texts), size=args.messages, replace=False)]
    default_model = ROOT / "bench" / "results" / "model"
    if not (args.model / "manifest.json").is_file() and args.model.resolve() != default_model.resolve():
        # Fitting the default engine into a folder named after another encoder would measure the wrong model.
        sys.exit(f"error: no bundle at {args.model} (bench/accuracy.py --encoder … writes it)")
    if not (args.model / "manifest.json").is_file():
        print(f"no bundle at {args.model}: fitting one on {args.data}/train.csv", flush=True)
        texts, labels = read_labelled_csv(args.data / "train.csv")
        engine = AnsweringEngine(EngineConfig(), threads=2).fit(texts, labels, progress=True)
        engine.save(args.model)
        engine.export_onnx()
    configure_inference_threads(2)
    manifest = json.loads((args.model / "manifest.json").read_text())
    config = manifest.get("config", {})
    source = " + ".join(
        str(e.get("source", "?")) for e in [config.get("encoder", {}), *config.get("extra_encoders", [])]
    )
    print(f"bundle {args.model} (encoder {source})", flush=True)
    results: dict[str, Any] = {
        "model": str(args.model),
        "encoder": source,
        "messages": args.messages,
        "threads": 2,
    }
    for runtime in ("torch", "onnx"):
        print(f"measuring {runtime}", flush=True)
        engine = AnsweringEngine.load(args.model, runtime=runtime, threads=2)
        results[runtime] = measure(engine, messages)
    lines = [
        f"{'runtime':<8}{'encode p50':>12}{'encode p99':>12}{'predict p50':>13}{'predict p99':>13}"
        f"{'ratio p50':>11}{'target':>9}",
        "-" * 78,
    ]
    for runtime in ("torch", "onnx"):
        r = results[runtime]
        ok = "ok" if r["ratio_p50"] <= TARGET_RATIO else "MISS"
        lines.append(
            f"{runtime:<8}{r['encode']['p50_ms']:>10.2f}ms{r['encode']['p99_ms']:>10.2f}ms"
            f"{r['predict']['p50_ms']:>11.2f}ms{r['predict']['p99_ms']:>11.2f}ms"
            f"{r['ratio_p50']:>10.2f}x{'<=1.5x':>8} {ok}"
        )
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    # The bundle of `bench/accuracy.py --encoder NAME` is model_NAME: its figures go to latency_NAME.json.
    tag = args.model.name.removeprefix("model")
    json_path = args.out / f"latency{tag}.json"
    json_path.write_text(json.dumps(results, indent=2))
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
