"""The store on a Milvus Lite file: atomic document replacement, records of what is
current, and re-indexing chunks written before those records existed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from services.retrieval.chunking import Chunker
from services.retrieval.documents import ChunkData, DocumentMeta, chunk_version, version_key
from services.retrieval.embedding import Embedder
from services.retrieval.indexing import Indexer
from services.retrieval.search import Mode, SearchFilter
from services.retrieval.store import Store
from services.retrieval.text import keyword_text

TENANT = "acme"
OLD = ["The status light blinks orange while the router is offline.", "Hold the reset button for ten seconds."]
NEW = ["The status light blinks red while the router updates its firmware.", "Unplug the router to restart it."]


@pytest_asyncio.fixture
async def store(tmp_path: Path, embedder: Embedder) -> AsyncIterator[Store]:
    opened = await asyncio.to_thread(Store.open, str(tmp_path / "milvus.db"), "kb", embedder.dimension)
    try:
        yield opened
    finally:
        await opened.close()


def meta(content_hash: str, doc_id: str = "router-light", indexing: str = "test") -> DocumentMeta:
    return DocumentMeta(
        tenant_id=TENANT,
        doc_id=doc_id,
        title="Router status light",
        url="",
        doc_type=1,
        product="",
        version="",
        updated_at=0,
        content_hash=content_hash,
        pipeline="test",
        indexing=indexing,
    )


def chunks(embedder: Embedder, texts: list[str]) -> list[ChunkData]:
    vectors = embedder.embed_documents(texts)
    return [
        ChunkData(index, ("Router status light",), text, keyword_text(text), vectors[index])
        for index, text in enumerate(texts)
    ]


async def test_an_empty_knowledge_base_finds_nothing_in_every_mode(store: Store, embedder: Embedder) -> None:
    # BM25 over a collection that never held a row makes Milvus 2.5 fail on a NaN.
    vector = embedder.embed_query("router reset")
    for mode in Mode:
        assert await store.search(TENANT, keyword_text("router reset"), vector, mode, 5, SearchFilter()) == [], mode


def test_a_milvus_lite_3_folder_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "milvus.db" / "collections").mkdir(parents=True)
    with pytest.raises(RuntimeError, match=r"Milvus Lite 3 .* ingest the documents again"):
        Store.open(str(tmp_path / "milvus.db"), "kb", 8)


async def versions_seen(store: Store, embedder: Embedder, doc_id: str = "router-light") -> dict[Mode, set[str]]:
    """Per search mode, the versions of the document among the hits."""
    query = "router status light blinks"
    vector = embedder.embed_query(query)
    seen = {}
    for mode in Mode:
        hits = await store.search(TENANT, keyword_text(query), vector, mode, 10, SearchFilter())
        seen[mode] = {chunk_version(hit.chunk_id) for hit in hits if hit.doc_id == doc_id}
    return seen


def each_mode(versions: set[str]) -> dict[Mode, set[str]]:
    return {mode: versions for mode in Mode}


async def stored_versions(store: Store, doc_id: str = "router-light") -> set[str]:
    rows = await asyncio.to_thread(
        store.client.query, store.collection, filter=f'doc_id == "{doc_id}"', output_fields=["chunk_id"]
    )
    return {chunk_version(row["chunk_id"]) for row in rows}


Paused = asyncio.Queue[tuple[str, asyncio.Event]]


def pause_replaces(store: Store, monkeypatch: pytest.MonkeyPatch) -> Paused:
    """Make the store's replaces stop after writing the new chunks and after switching the
    record: each stop puts (step, resume event) on the returned queue and waits for it."""
    paused: Paused = asyncio.Queue()

    def pausing(step: str, original: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def wrapper(*args: Any) -> None:
            resume = asyncio.Event()
            await paused.put((step, resume))
            await resume.wait()
            await original(*args)

        return wrapper

    monkeypatch.setattr(store, "_switch_version", pausing("new chunks written", store._switch_version))
    monkeypatch.setattr(store, "_delete_stale_chunks", pausing("record switched", store._delete_stale_chunks))
    return paused


async def test_a_replaced_document_is_never_seen_in_two_versions_or_none(
    store: Store, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.replace_document(meta("v1"), chunks(embedder, OLD))
    old, new = version_key("v1", "test", "test"), version_key("v2", "test", "test")
    assert await versions_seen(store, embedder) == each_mode({old})

    # Pause the replace after each step and search meanwhile.
    paused = pause_replaces(store, monkeypatch)
    replace = asyncio.create_task(store.replace_document(meta("v2"), chunks(embedder, NEW)))

    step, resume = await asyncio.wait_for(paused.get(), 30)
    assert step == "new chunks written"
    assert await stored_versions(store) == {old, new}  # both are in the collection...
    assert await versions_seen(store, embedder) == each_mode({old})  # ...searches see one
    resume.set()

    step, resume = await asyncio.wait_for(paused.get(), 30)
    assert step == "record switched"
    assert await stored_versions(store) == {old, new}
    assert await versions_seen(store, embedder) == each_mode({new})
    resume.set()

    outcome = await asyncio.wait_for(replace, 30)
    assert outcome.existed and outcome.applied
    assert await stored_versions(store) == {new}
    assert await versions_seen(store, embedder) == each_mode({new})
    assert await store.stats(TENANT) == (1, 2)


async def crashed_replace(
    store: Store, monkeypatch: pytest.MonkeyPatch, content_hash: str, new_chunks: list[ChunkData]
) -> None:
    """A replace whose process dies after writing the new chunks, before the record switches."""

    async def crash(*args: Any) -> None:
        raise RuntimeError("process killed")

    with monkeypatch.context() as patch:
        patch.setattr(store, "_switch_version", crash)
        with pytest.raises(RuntimeError):
            await store.replace_document(meta(content_hash), new_chunks)


async def test_chunks_orphaned_by_a_crash_mid_replace_are_removed_by_the_next_write(
    store: Store, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.replace_document(meta("v1"), chunks(embedder, OLD))
    await crashed_replace(store, monkeypatch, "v2", chunks(embedder, NEW))
    v1, v2, v3 = (version_key(v, "test", "test") for v in ("v1", "v2", "v3"))
    assert await stored_versions(store) == {v1, v2}  # v2's chunks are orphans...
    assert await versions_seen(store, embedder) == each_mode({v1})  # ...that no search sees
    assert await store.stats(TENANT) == (1, 2)  # stats count what searches see

    await store.replace_document(meta("v3"), chunks(embedder, OLD))
    assert await stored_versions(store) == {v3}
    assert await store.stats(TENANT) == (1, 2)

    # A crash before a delete: the delete removes the orphans too.
    await crashed_replace(store, monkeypatch, "v1", chunks(embedder, NEW))
    assert await store.delete_documents(TENANT, ["router-light"]) == ["router-light"]
    assert await stored_versions(store) == set()
    assert await store.stats(TENANT) == (0, 0)


async def test_a_replace_retried_after_a_crash_writes_each_chunk_once(
    store: Store, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New chunks are inserted, not upserted (an upsert scans on Milvus Lite); a retry of
    # the same version after a crash must still overwrite them, never add a second copy.
    await crashed_replace(store, monkeypatch, "v1", chunks(embedder, OLD))
    await store.replace_document(meta("v1"), chunks(embedder, OLD))
    # Queries and searches hide a duplicated key; a count does not.
    (counted,) = await asyncio.to_thread(
        store.client.query, store.collection, filter='doc_id == "router-light"', output_fields=["count(*)"]
    )
    assert counted["count(*)"] == 2
    hits = await store.search(
        TENANT, keyword_text("router light"), embedder.embed_query("router light"), Mode.HYBRID, 10, SearchFilter()
    )
    assert len(hits) == 2
    assert await store.stats(TENANT) == (1, 2)


async def pending_rows(store: Store) -> int:
    (counted,) = await asyncio.to_thread(
        store.client.query, store.documents, filter="chunk_count < 0", output_fields=["count(*)"]
    )
    return int(counted["count(*)"])


async def test_pending_rows_of_finished_replaces_are_deleted_together_at_the_next_flush(
    store: Store, embedder: Embedder
) -> None:
    await store.replace_document(meta("v1"), chunks(embedder, OLD))
    # The next replace finds the first one's pending row (naming the current version) and
    # treats it as stale, like the record.
    await store.replace_document(meta("v2"), chunks(embedder, NEW))
    await store.replace_document(meta("v1", doc_id="other"), chunks(embedder, OLD))
    assert await pending_rows(store) == 2
    await store.flush()
    assert await pending_rows(store) == 0
    v2 = version_key("v2", "test", "test")
    assert await stored_versions(store) == {v2}
    assert await versions_seen(store, embedder) == each_mode({v2})
    assert await store.stats(TENANT) == (2, 4)


async def test_documents_are_listed_in_pages_with_their_metadata(store: Store, embedder: Embedder) -> None:
    for doc_id in ("c", "a", "b"):
        await store.replace_document(meta("v1", doc_id=doc_id), chunks(embedder, OLD))
    first = await store.list_documents(TENANT, "", 2)
    assert [record.doc_id for record, _ in first] == ["a", "b"]
    assert first[0][1]["title"] and first[0][0].chunk_count == 2
    rest = await store.list_documents(TENANT, "b", 2)
    assert [record.doc_id for record, _ in rest] == ["c"]
    assert await store.list_documents("someone-else", "", 10) == []


async def test_a_replace_expecting_another_version_changes_nothing(store: Store, embedder: Embedder) -> None:
    await store.replace_document(meta("v1"), chunks(embedder, OLD))
    outcome = await store.replace_document(meta("v2"), chunks(embedder, NEW), expected_version="superseded")
    assert (outcome.existed, outcome.applied) == (True, False)
    assert await stored_versions(store) == {version_key("v1", "test", "test")}


async def test_deleted_documents_disappear_from_every_mode(store: Store, embedder: Embedder) -> None:
    await store.replace_document(meta("v1"), chunks(embedder, OLD))
    await store.replace_document(meta("v1", doc_id="other"), chunks(embedder, NEW))
    assert await store.delete_documents(TENANT, ["router-light", "missing"]) == ["router-light"]
    assert await versions_seen(store, embedder) == each_mode(set())
    assert await stored_versions(store) == set()
    assert await store.stats(TENANT) == (1, 2)


async def test_chunks_from_before_document_records_are_adopted_and_reindexed(
    tmp_path: Path, embedder: Embedder, chunker: Chunker
) -> None:
    path = str(tmp_path / "legacy.db")
    store = await asyncio.to_thread(Store.open, path, "kb", embedder.dimension)
    await store.replace_document(meta("v1", indexing="old-model"), chunks(embedder, OLD))
    await store.flush()
    # What a store written by the previous release looks like: chunks, no records.
    await asyncio.to_thread(store.client.drop_collection, store.documents)
    await store.close()

    store = await asyncio.to_thread(Store.open, path, "kb", embedder.dimension)
    try:
        (record,) = (await store.records(TENANT, ["router-light"])).values()
        assert (record.version_key, record.indexing, record.chunk_count) == (
            version_key("v1", "test", "old-model"),
            "",
            2,
        )
        assert await versions_seen(store, embedder) == each_mode({record.version_key})

        indexer = Indexer(store, embedder, chunker)
        await indexer.resume()
        await indexer.idle()
        (current,) = (await store.records(TENANT, ["router-light"])).values()
        assert current.indexing == indexer.indexing(await indexer.glossary(TENANT))
        # Same content and chunking, re-embedded under a new version key.
        assert (current.content_hash, current.pipeline, current.chunk_count) == ("v1", "test", 2)
        assert await stored_versions(store) == {current.version_key} != {record.version_key}
        await indexer.close()
    finally:
        await store.close()


async def test_keyword_search_applies_every_filter(store: Store, embedder: Embedder) -> None:
    def variant(doc_id: str, **fields: Any) -> DocumentMeta:
        return dataclasses.replace(meta("v1", doc_id=doc_id), **fields)

    await store.replace_document(
        variant("guide", doc_type=1, product="router", version="2", updated_at=100), chunks(embedder, OLD)
    )
    await store.replace_document(
        variant("faq", doc_type=2, product="router", version="3", updated_at=200), chunks(embedder, OLD)
    )
    await store.replace_document(
        variant("modem", doc_type=1, product="modem", version="2", updated_at=300), chunks(embedder, OLD)
    )
    other = dataclasses.replace(variant("theirs"), tenant_id="other-tenant")
    await store.replace_document(other, chunks(embedder, OLD))

    async def found(search_filter: SearchFilter) -> set[str]:
        hits = await store.search(
            TENANT, keyword_text("status light reset"), embedder.embed_query("x"), Mode.KEYWORD, 50, search_filter
        )
        return {hit.doc_id for hit in hits}

    assert await found(SearchFilter()) == {"guide", "faq", "modem"}
    assert await found(SearchFilter(doc_types=(2,))) == {"faq"}
    assert await found(SearchFilter(product="router")) == {"guide", "faq"}
    assert await found(SearchFilter(version="2")) == {"guide", "modem"}
    assert await found(SearchFilter(updated_after=200)) == {"faq", "modem"}
    assert await found(SearchFilter(product="router", doc_types=(1,), updated_after=50)) == {"guide"}
