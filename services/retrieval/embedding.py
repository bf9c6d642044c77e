"""Retrieval's embeddings: documents and queries through servicekit's one local-only
sentence-transformers loader (all-MiniLM-L6-v2 from its PyPI package by default).
The calls here are blocking (CPU/GPU bound); handlers run them with asyncio.to_thread.
"""

from __future__ import annotations

import numpy as np

from servicekit.embeddings import SentenceEncoder


class Embedder(SentenceEncoder):
    """One loaded model: normalised vectors, so cosine similarity is a dot product.
    `tokenizer` and `max_seq_length` are what the chunker counts tokens with."""

    def __init__(self, model: str = "") -> None:
        # Queries are not held up behind an ingest's batches (as before the shared loader).
        super().__init__(model, exclusive=False)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.encode([text])[0]
        return vector
