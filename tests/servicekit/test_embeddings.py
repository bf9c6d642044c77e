"""servicekit.embeddings: the one local-only sentence-transformers loader (all-MiniLM-L6-v2
from its package, all-mpnet-base-v2 assembled from its PyPI parts)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from servicekit import embeddings
from servicekit.embeddings import MINILM_MODEL, SentenceEncoder, mpnet_model_path


def test_the_default_model_loads_from_its_package_and_gives_unit_vectors() -> None:
    encoder = SentenceEncoder(torch_threads=1)
    assert (encoder.name, encoder.dimension) == (MINILM_MODEL, 384)
    vectors = encoder.encode(["reset my password", "export my data"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert encoder.encode([]).shape == (0, 384)


def _fake_parts(tmp_path: Path, payload: bytes) -> list[Path]:
    parts = []
    for index, start in enumerate(range(0, len(payload), len(payload) // 3 + 1), start=1):
        part = tmp_path / f"model.zip.{index:03d}"
        part.write_bytes(payload[start : start + len(payload) // 3 + 1])
        parts.append(part)
    return parts


def test_mpnet_is_assembled_from_its_parts_only_when_the_checksums_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("all-mpnet-base-v2/modules.json", "[]")
        bundle.writestr("all-mpnet-base-v2/model.safetensors", b"weights")
        bundle.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    payload = buffer.getvalue()
    monkeypatch.setattr(embeddings, "mpnet_part_files", lambda: _fake_parts(tmp_path, payload))
    monkeypatch.setattr(embeddings, "MPNET_ZIP_SHA256", hashlib.sha256(payload).hexdigest())

    # Weights that are not the expected ones: nothing is left in the cache.
    with pytest.raises(RuntimeError, match="weights have SHA-256"):
        mpnet_model_path(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []

    monkeypatch.setattr(embeddings, "MPNET_WEIGHTS_SHA256", hashlib.sha256(b"weights").hexdigest())
    folder = mpnet_model_path(tmp_path / "cache")
    assert (folder / "modules.json").read_text() == "[]"
    assert not (folder / "desktop.ini").exists()
    assert mpnet_model_path(tmp_path / "cache") == folder  # second call: the folder as it is

    # Parts that do not join into the expected archive are refused.
    monkeypatch.setattr(embeddings, "MPNET_ZIP_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="parts join to SHA-256"):
        mpnet_model_path(tmp_path / "other")
