"""Knowledge-base passages for a finding (changelog, known issue, how-to), via
retrieval's Search, and the fix sentence taken from them.

Retrieval being down never loses a finding: the evidence is stored without
passages and `knowledge_unavailable` says why. Several hits of one document are
one passage (one citation), their texts joined in rank order. Within one detection run,
identical queries are asked once, and after retrieval failed once the run
stops asking (a run has hundreds of findings; each failed call costs retries).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import grpc
import structlog

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.outreach.models import PassageJson

log = structlog.get_logger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Emphasis and code marks anywhere; headings, quotes and list marks only where a line starts
# ("Settings > Workspace > API Keys" keeps its arrows).
_MARKUP = re.compile(r"[*`]+|^\s*(?:#+|>|[-+]|\d+\.)\s+")
_VERBS = (r"(?:upgrade|update|install|add|split|set|create|rotate|renew|grant|check|retry|use|enable|configure|"
          r"wait|contact|replace|remove|send|deploy|verify|allow)")
# An instruction: the verb opens the sentence, or follows a lead-in such as "To fix it," or
# "Recommended:". "SDKs queue events and send them ..." describes; it does not instruct.
_ACTION = re.compile(
    rf"^(?:[^,.:;]{{0,60}}[,:]\s*)?(?:please\s+|then\s+|you (?:can|should|need to|must)\s+)?{_VERBS}\b",
    re.IGNORECASE,
)
_TABLE_ROW = re.compile(r"^\s*\|(.+)\|\s*$")
_TABLE_RULE = re.compile(r"^[\s|:-]+$")
# Table columns that say what to do, and those that describe the row.
_DO_COLUMN = re.compile(r"what to do|fix|action|resolution|solution|workaround", re.IGNORECASE)
_ABOUT_COLUMN = re.compile(r"meaning|description|cause|problem", re.IGNORECASE)
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

    def as_json(self) -> PassageJson:
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
        passages = one_per_document([
            Passage(hit.doc_id, hit.chunk_id, hit.title, hit.url, hit.text, round(hit.score, 6), hit.version)
            for hit in response.hits
            if hit.similarity >= self._min_similarity
        ])
        self._cache[key] = passages
        return passages


def one_per_document(passages: list[Passage]) -> list[Passage]:
    """One passage per document, in the rank of its best hit: its later hits' texts are
    appended, so a fix found in any of them is still found, and it is cited once."""
    merged: dict[str, Passage] = {}
    for passage in passages:
        first = merged.get(passage.doc_id)
        if first is None:
            merged[passage.doc_id] = passage
        elif passage.text not in first.text:
            merged[passage.doc_id] = dataclasses.replace(first, text=f"{first.text}\n\n{passage.text}")
    return list(merged.values())


def _clean(sentence: str) -> str:
    return " ".join(_MARKUP.sub("", sentence).split())


def _cells(line: str) -> list[str]:
    match = _TABLE_ROW.match(line)
    return [_clean(cell) for cell in match.group(1).split("|")] if match else []


def _table_sentence(header: list[str], cells: list[str]) -> str:
    """A table row as a sentence, when its table has a what-to-do column:
    "| 401 | E-1002 | API key revoked or expired | Create a new key |" under
    "| HTTP | Code | Meaning | What to do |" -> "401 E-1002 (API key revoked or expired): Create a new key."."""
    if len(cells) != len(header):
        return ""
    todo = next((i for i, name in enumerate(header) if _DO_COLUMN.search(name)), None)
    if todo is None or not cells[todo]:
        return ""
    about = [c for i, c in enumerate(cells) if i != todo and c and _ABOUT_COLUMN.search(header[i])]
    label = " ".join(c for i, c in enumerate(cells) if i != todo and c and not _ABOUT_COLUMN.search(header[i]))
    if about:
        label += f" ({'; '.join(about)})"
    action = cells[todo][0].upper() + cells[todo][1:]
    return f"{label}: {action}".rstrip(".") + "."


def instructions(text: str) -> list[str]:
    """The sentences of `text`, without markup, that tell the reader what to do; a row of a
    table with a what-to-do column is one such sentence."""
    found: list[str] = []
    header: list[str] = []
    for line in text.splitlines():
        cells = _cells(line)
        if not cells:
            header = []
            found += [s for s in (_clean(raw) for raw in _SENTENCE_END.split(line)) if _ACTION.search(s)]
        elif not header:
            header = cells
        elif not _TABLE_RULE.match(line):
            sentence = _table_sentence(header, cells)
            if sentence:
                found.append(sentence)
    return found


def suggested_fix(passages: list[Passage], clues: list[str]) -> str:
    """The passage sentences that say what to do, preferring ones that name the finding's
    error code, endpoint or version; empty when no passage says what to do."""
    wanted = [c.lower() for c in clues if c]
    best: list[tuple[float, int, int, str]] = []
    for rank, passage in enumerate(passages[:3]):
        for position, sentence in enumerate(instructions(passage.text)):
            if len(sentence) < 20 or sentence.endswith("?"):
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
