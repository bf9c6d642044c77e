"""Knowledge-base passages for a finding (changelog, known issue, how-to), via
retrieval's Search, and the fix sentence taken from them.

Retrieval being down never loses a finding: the evidence is stored without
passages and `knowledge_unavailable` says why. Within one detection run,
identical queries are asked once, and after retrieval failed once the run
stops asking (a run has hundreds of findings; each failed call costs retries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
import structlog

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

log = structlog.get_logger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKUP = re.compile(r"[*`#>]+|^\s*(?:[-+]|\d+\.)\s+")
_ACTION = re.compile(
    r"\b(upgrade|update|install|add|split|set|create|rotate|renew|grant|check|retry|use|enable|configure|"
    r"wait|contact|replace|remove|send|deploy|verify|allow)\b",
    re.IGNORECASE,
)
MAX_FIX_CHARS = 400


@dataclass(frozen=True)
class Passage:
    doc_id: str
    chunk_id: str
    title: str
    url: str
    text: str
    score: float
    version: str

    def as_json(self) -> dict[str, object]:
        return {
            "doc_id": self.doc_id, "chunk_id": self.chunk_id, "title": self.title, "url": self.url,
            "text": self.text, "score": self.score, "version": self.version,
        }


class KnowledgeLookup:
    """One detection run's view of the knowledge base."""

    def __init__(self, stub: retrieval_pb2_grpc.RetrievalServiceStub | None, top_k: int, min_similarity: float):
        self._stub = stub
        self._top_k = top_k
        self._min_similarity = min_similarity
        self._cache: dict[tuple[str, str], list[Passage]] = {}
        self.unavailable = stub is None

    async def search(self, tenant_id: str, query: str) -> list[Passage] | None:
        """Relevant passages, or None when the knowledge base cannot be searched."""
        if self.unavailable or self._stub is None:
            return None
        key = (tenant_id, query)
        if key in self._cache:
            return self._cache[key]
        try:
            response = await self._stub.Search(
                retrieval_pb2.SearchRequest(
                    tenant_id=tenant_id, query=query[:2000], top_k=self._top_k,
                    mode=retrieval_pb2.SEARCH_MODE_HYBRID,
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                self._cache[key] = []
                return []
            log.warning("knowledge_base_unavailable", code=error.code().name)
            self.unavailable = True
            return None
        passages = [
            Passage(hit.doc_id, hit.chunk_id, hit.title, hit.url, hit.text, round(hit.score, 6), hit.version)
            for hit in response.hits
            if hit.similarity >= self._min_similarity
        ]
        self._cache[key] = passages
        return passages


def _clean(sentence: str) -> str:
    return " ".join(_MARKUP.sub("", sentence).split())


def suggested_fix(passages: list[Passage], clues: list[str]) -> str:
    """The passage sentences that say what to do, preferring ones that name the finding's
    error code, endpoint or version; empty when no passage says what to do."""
    wanted = [c.lower() for c in clues if c]
    best: list[tuple[float, int, int, str]] = []
    for rank, passage in enumerate(passages[:3]):
        for position, raw in enumerate(_SENTENCE_END.split(passage.text)):
            sentence = _clean(raw)
            if len(sentence) < 20 or sentence.endswith("?") or not _ACTION.search(sentence):
                continue
            score = sum(2.0 for clue in wanted if clue in sentence.lower()) + 1.0 / (1 + rank)
            if re.search(r"\b(to fix|recommended|workaround|fix)\b", sentence, re.IGNORECASE):
                score += 1.5
            best.append((score, -rank, -position, sentence))
    if not best:
        return ""
    best.sort(reverse=True)
    chosen = [best[0][3]]
    if len(best) > 1 and best[1][0] >= best[0][0] - 0.5 and len(chosen[0]) + len(best[1][3]) < MAX_FIX_CHARS:
        chosen.append(best[1][3])
    return " ".join(chosen)[:MAX_FIX_CHARS]
