"""Indexing: documents, and stored chunks, become searchable chunks.

A document becomes passages (token-bounded chunks for search) and answer units
(whole answers to the questions its structure names: see chunking.answer_units).
A passage is embedded and keyword-indexed from its title, heading path and
text; a unit of an FAQ or a ticket is embedded from its question alone (a
customer's question is matched to the question the unit answers), a section's
from its heading and text, and every unit is keyword-indexed from question and
answer; all expanded by the tenant's glossary, as queries are. When a
tenant's glossary changes, its documents are re-indexed in the background from
their stored chunks, each one swapped atomically (Store.replace_document).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import structlog
from pymilvus import MilvusException

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from services.retrieval.chunking import Chunker, Format, UnitKind, answer_units, embed_text
from services.retrieval.documents import ChunkData, DocumentMeta, DocumentRecord, Replaced
from services.retrieval.embedding import Embedder
from services.retrieval.spelling import Correction, Speller
from services.retrieval.store import Store
from services.retrieval.text import KEYWORD_VERSION, Glossary, keyword_text

log = structlog.get_logger(__name__)

# Bump when chunking changes: stored documents are then re-indexed on their next ingest.
CHUNKER_VERSION = "chunker-2-units"
# Searches use a glossary read at most this long ago; SetGlossary refreshes this
# process at once, other replicas (MILVUS_URI) within this time.
GLOSSARY_TTL_S = 10.0
# Documents re-embedded together by a background re-index.
REINDEX_BATCH = 16
# Tenants whose glossary is cached (searches of unknown tenants must not grow it forever).
_GLOSSARY_CACHE_SIZE = 10_000
# A tenant's spelling vocabulary is re-read in the background once it is this old, or at
# once after this process wrote its documents (searches meanwhile use the previous one).
SPELLING_TTL_S = 300.0
# What reads a query while its tenant's vocabulary cannot be read: nothing is a typo.
_NO_TYPOS = Speller(Counter())


@dataclass(frozen=True)
class Source:
    """A document to index: its metadata and body."""

    meta: DocumentMeta
    body: str
    fmt: Format


@dataclass(frozen=True)
class Entry:
    """A passage or, with a question, an answer unit, before it is embedded."""

    heading_path: tuple[str, ...]
    text: str
    unit_question: str = ""


def entries(source: Source, chunker: Chunker) -> list[Entry]:
    """A document's passages, then its answer units."""
    doc_type = source.meta.doc_type
    faq = doc_type == pb.DOCUMENT_TYPE_FAQ
    kind: UnitKind = "faq" if faq else "ticket" if doc_type == pb.DOCUMENT_TYPE_RESOLVED_TICKET else "other"
    passages = [
        Entry(chunk.heading_path, chunk.text)
        for chunk in chunker.chunk(source.meta.title, source.body, source.fmt, faq=faq)
    ]
    units = [
        Entry(unit.heading_path, unit.answer, unit.question)
        for unit in answer_units(source.meta.title, source.body, source.fmt, kind)
    ]
    return passages + units


@dataclass(frozen=True)
class Query:
    vector: np.ndarray
    keywords: str
    # The text searched when typos were corrected ("" when none were), and the corrections.
    corrected: str = ""
    corrections: tuple[Correction, ...] = ()


class Indexer:
    def __init__(self, store: Store, embedder: Embedder, chunker: Chunker) -> None:
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self.pipeline = f"{embedder.name}|{CHUNKER_VERSION}|{chunker.max_tokens}/{chunker.overlap}"
        self._glossaries: dict[str, tuple[float, Glossary]] = {}
        # Per tenant: when its speller was built (None: stale, rebuild) and the speller.
        self._spellers: dict[str, tuple[float | None, Speller]] = {}
        self._speller_builds: dict[str, asyncio.Task[Speller]] = {}
        # Words the embedding model knows are never read as typos.
        self._model_words = frozenset(
            word for word in embedder.tokenizer.get_vocab() if word.isalpha() and len(word) > 1
        )
        self._reindexing: dict[str, asyncio.Task[None]] = {}
        self._rescan: set[str] = set()

    @property
    def embedding_model(self) -> str:
        return self._embedder.name

    def indexing(self, glossary: Glossary) -> str:
        """What a chunk's vectors and keywords depend on, besides its own text."""
        return f"{self._embedder.name}|{KEYWORD_VERSION}|glossary:{glossary.digest}"

    # Glossaries ----------------------------------------------------------------

    async def glossary(self, tenant_id: str, *, fresh: bool = False) -> Glossary:
        cached = self._glossaries.get(tenant_id)
        if cached and not fresh and time.monotonic() - cached[0] < GLOSSARY_TTL_S:
            return cached[1]
        glossary = await self._store.glossary(tenant_id)
        self._cache(tenant_id, glossary)
        return glossary

    def _cache(self, tenant_id: str, glossary: Glossary) -> None:
        if len(self._glossaries) >= _GLOSSARY_CACHE_SIZE:
            self._glossaries.clear()
        self._glossaries[tenant_id] = (time.monotonic(), glossary)

    async def set_glossary(self, tenant_id: str, glossary: Glossary) -> int:
        """Store a glossary; returns how many documents are being re-indexed for it."""
        await self._store.set_glossary(tenant_id, glossary)
        self._cache(tenant_id, glossary)
        stale = await self._store.stale_documents(tenant_id, self.indexing(glossary))
        if stale:
            self.schedule_reindex(tenant_id)
        log.info("glossary_set", tenant_id=tenant_id, entries=len(glossary.entries), reindex_documents=len(stale))
        return len(stale)

    async def pending(self, tenant_id: str, glossary: Glossary) -> int:
        """Documents of the tenant not yet indexed with `glossary`."""
        return len(await self._store.stale_documents(tenant_id, self.indexing(glossary)))

    # Queries -------------------------------------------------------------------

    async def query(self, tenant_id: str, text: str) -> Query:
        glossary = await self.glossary(tenant_id)
        corrected, corrections = (await self.speller(tenant_id, glossary)).correct(text)
        expanded = glossary.expand(corrected)
        vector = await asyncio.to_thread(self._embedder.embed_query, expanded)
        return Query(vector, keyword_text(expanded), corrected if corrections else "", tuple(corrections))

    # Spelling ------------------------------------------------------------------

    async def speller(self, tenant_id: str, glossary: Glossary) -> Speller:
        """The tenant's typo reader: built on its first query, then rebuilt in the background
        when stale (a search never waits for a rebuild)."""
        cached = self._spellers.get(tenant_id)
        if cached is None:
            try:
                return await self._build_speller(tenant_id, glossary)
            except MilvusException as error:
                # Searched as written this time; the next query tries again.
                log.warning("speller_unavailable", tenant_id=tenant_id, error=str(error))
                return _NO_TYPOS
        built_at, speller = cached
        if built_at is None or time.monotonic() - built_at > SPELLING_TTL_S:
            self._build_speller(tenant_id, glossary)
        return speller

    def _build_speller(self, tenant_id: str, glossary: Glossary) -> asyncio.Task[Speller]:
        running = self._speller_builds.get(tenant_id)
        if running is not None:
            return running

        async def build() -> Speller:
            started = time.monotonic()
            texts = await self._store.texts(tenant_id)
            known = self._model_words | {w for entry in glossary.entries for w in entry.term.lower().split()}
            speller = await asyncio.to_thread(Speller.of_texts, texts, known)
            if len(self._spellers) >= _GLOSSARY_CACHE_SIZE:
                self._spellers.clear()
            self._spellers[tenant_id] = (started, speller)
            return speller

        def done(task: asyncio.Task[Speller]) -> None:
            self._speller_builds.pop(tenant_id, None)
            if not task.cancelled() and (error := task.exception()) is not None:
                log.warning("speller_build_failed", tenant_id=tenant_id, error=str(error))

        task = asyncio.get_running_loop().create_task(build())
        self._speller_builds[tenant_id] = task
        task.add_done_callback(done)
        return task

    def words_changed(self, tenant_id: str) -> None:
        """This process wrote the tenant's documents: its speller is stale."""
        if (cached := self._spellers.get(tenant_id)) is not None:
            self._spellers[tenant_id] = (None, cached[1])

    # Documents -----------------------------------------------------------------

    async def index(self, sources: Sequence[Source], glossary: Glossary) -> list[tuple[int, Replaced]]:
        """Chunk, embed and store documents; (chunk count, outcome) for each."""

        def chunk_all() -> list[list[Entry]]:
            return [entries(source, self._chunker) for source in sources]

        chunked = await asyncio.to_thread(chunk_all)
        metas = [replace(source.meta, pipeline=self.pipeline, indexing=self.indexing(glossary)) for source in sources]
        return await self._write(metas, chunked, glossary)

    async def _write(
        self,
        metas: Sequence[DocumentMeta],
        chunked: Sequence[Sequence[Entry]],
        glossary: Glossary,
        expected: Sequence[str | None] | None = None,
    ) -> list[tuple[int, Replaced]]:
        """Embed and store; (rows written: passages and units, outcome) for each document."""
        embed_texts: list[str] = []
        search_texts: list[str] = []
        for meta, chunks in zip(metas, chunked, strict=True):
            for entry in chunks:
                if entry.unit_question:
                    # An FAQ's or ticket's question is a customer's question: matched as it is. A
                    # section's heading names a topic only: matched with its text, as a passage is.
                    question_only = meta.doc_type in (pb.DOCUMENT_TYPE_FAQ, pb.DOCUMENT_TYPE_RESOLVED_TICKET)
                    unit_text = f"{entry.unit_question}\n{entry.text}"
                    embed_texts.append(glossary.expand(entry.unit_question if question_only else unit_text))
                    search_texts.append(keyword_text(glossary.expand(unit_text)))
                else:
                    expanded = glossary.expand(embed_text(meta.title, entry.heading_path, entry.text))
                    embed_texts.append(expanded)
                    search_texts.append(keyword_text(expanded))
        vectors = await asyncio.to_thread(self._embedder.embed_documents, embed_texts)
        results = []
        offset = 0
        for position, (meta, chunks) in enumerate(zip(metas, chunked, strict=True)):
            data = [
                ChunkData(
                    index, entry.heading_path, entry.text, search_texts[offset + index], vectors[offset + index],
                    unit_question=entry.unit_question,
                )
                for index, entry in enumerate(chunks)
            ]
            offset += len(chunks)
            outcome = await self._store.replace_document(
                meta, data, expected_version=expected[position] if expected else None
            )
            self.words_changed(meta.tenant_id)
            results.append((len(data), outcome))
        return results

    # Background re-indexing ----------------------------------------------------

    async def resume(self) -> None:
        """Re-index what a change of glossary, embedding model or keyword normalisation
        left behind (say the process stopped half-way)."""
        for tenant_id, indexings in (await self._store.indexings()).items():
            if indexings != {self.indexing(await self.glossary(tenant_id, fresh=True))}:
                self.schedule_reindex(tenant_id)

    def schedule_reindex(self, tenant_id: str) -> None:
        task = self._reindexing.get(tenant_id)
        if task and not task.done():
            self._rescan.add(tenant_id)  # it looks again before it stops
            return
        self._reindexing[tenant_id] = asyncio.get_running_loop().create_task(self._reindex(tenant_id))

    async def _reindex(self, tenant_id: str) -> None:
        started = time.perf_counter()
        attempted: set[tuple[str, str]] = set()
        try:
            while True:
                self._rescan.discard(tenant_id)
                glossary = await self.glossary(tenant_id, fresh=True)
                stale = [
                    record
                    for record in await self._store.stale_documents(tenant_id, self.indexing(glossary))
                    # A document whose chunks could not be read is not tried again and again.
                    if (record.doc_id, record.version_key) not in attempted
                ]
                if not stale:
                    if tenant_id in self._rescan:
                        continue
                    break
                async with self._store.writing():
                    for start in range(0, len(stale), REINDEX_BATCH):
                        if (await self.glossary(tenant_id)).digest != glossary.digest:
                            break  # set again meanwhile: start over with the new one
                        batch = stale[start : start + REINDEX_BATCH]
                        attempted.update((record.doc_id, record.version_key) for record in batch)
                        await self._reindex_batch(tenant_id, batch, glossary)
            log.info(
                "reindexed",
                tenant_id=tenant_id,
                documents=len(attempted),
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        except Exception:
            # What is left stays stale: the next SetGlossary or restart picks it up.
            log.exception("reindex_failed", tenant_id=tenant_id)

    async def _reindex_batch(self, tenant_id: str, records: Sequence[DocumentRecord], glossary: Glossary) -> None:
        metas: list[DocumentMeta] = []
        chunked: list[list[Entry]] = []
        expected: list[str | None] = []
        for record in records:
            stored, chunks = await self._store.read_chunks(tenant_id, record)
            if not chunks:
                log.warning("reindex_no_chunks", tenant_id=tenant_id, doc_id=record.doc_id)
                continue
            metas.append(
                DocumentMeta(
                    tenant_id=tenant_id,
                    doc_id=record.doc_id,
                    title=stored["title"],
                    url=stored["url"],
                    doc_type=int(stored["doc_type"]),
                    product=stored["product"],
                    version=stored["version"],
                    updated_at=int(stored["updated_at"]),
                    content_hash=record.content_hash,
                    # Same chunks, so the same chunking: only the indexing changes.
                    pipeline=record.pipeline,
                    indexing=self.indexing(glossary),
                )
            )
            chunked.append([Entry(chunk.heading_path, chunk.text, chunk.unit_question) for chunk in chunks])
            expected.append(record.version_key)
        if metas:
            await self._write(metas, chunked, glossary, expected)

    async def idle(self) -> None:
        """Wait until no re-index is running (tests, shutdown)."""
        while tasks := [task for task in self._reindexing.values() if not task.done()]:
            await asyncio.wait(tasks)

    async def close(self) -> None:
        for task in self._reindexing.values():
            task.cancel()
        await asyncio.gather(*self._reindexing.values(), return_exceptions=True)
