"""Retrieval tests share the session's embedding model (tests/conftest.py) and one chunker."""

from __future__ import annotations

import pytest

from services.retrieval.chunking import Chunker
from services.retrieval.embedding import Embedder


@pytest.fixture(scope="session")
def chunker(embedder: Embedder) -> Chunker:
    return Chunker(embedder.tokenizer, max_tokens=256, overlap=32, model_max_tokens=embedder.max_seq_length)
