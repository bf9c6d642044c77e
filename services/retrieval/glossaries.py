"""Each tenant's glossary in Milvus (`<name>_glossaries`): a head row naming the current
version and one row per entry. Milvus rather than files: with MILVUS_URI every replica
shares it, and it lives and dies with the chunks it shaped.

A glossary is replaced entries first, then the head row (the switch), then the old
entries, so a reader sees the old glossary or the new one, whole. These calls block: the
store runs them in its worker thread, one writer per tenant glossary.
"""

from __future__ import annotations

from typing import Any

import structlog
from pymilvus import MilvusClient

from services.retrieval.expressions import quote, tenant_is
from services.retrieval.text import Glossary, GlossaryEntry

log = structlog.get_logger(__name__)

# Milvus caps one query's result window at 16384 rows; a glossary never gets near it.
_QUERY_LIMIT = 16384
_HEAD = {"position": -1, "term": "", "expansion": "", "placeholder": [0.0, 0.0]}


def read_glossary(client: MilvusClient, collection: str, tenant_id: str) -> Glossary:
    head = client.query(
        collection,
        filter=f"row_id == {quote(f'{tenant_id}/head')}",
        output_fields=["version", "entry_count"],
    )
    if not head or not head[0]["entry_count"]:
        return Glossary()
    rows = client.query(
        collection,
        filter=f"{tenant_is(tenant_id)} and version == {quote(head[0]['version'])} and position >= 0",
        output_fields=["position", "term", "expansion"],
        limit=_QUERY_LIMIT,
    )
    if len(rows) != head[0]["entry_count"]:
        log.warning("glossary_incomplete", tenant_id=tenant_id, expected=head[0]["entry_count"], got=len(rows))
    rows.sort(key=lambda row: row["position"])
    return Glossary(GlossaryEntry(row["term"], row["expansion"]) for row in rows)


def glossary_rows(tenant_id: str, glossary: Glossary) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of a glossary's entries, and the head row that makes them current."""
    version = glossary_version(glossary)
    rows = [
        {
            "row_id": f"{tenant_id}/{version}/{position:04d}",
            "tenant_id": tenant_id,
            "version": version,
            "position": position,
            "entry_count": len(glossary.entries),
            "term": entry.term,
            "expansion": entry.expansion,
            "placeholder": [0.0, 0.0],
        }
        for position, entry in enumerate(glossary.entries)
    ]
    head = {**_HEAD, "row_id": f"{tenant_id}/head", "tenant_id": tenant_id, "version": version}
    head["entry_count"] = len(rows)
    return rows, head


def glossary_version(glossary: Glossary) -> str:
    return glossary.digest or "empty"


def superseded_entries(tenant_id: str, glossary: Glossary) -> str:
    """A filter for the tenant's entries of every other glossary version than this one's."""
    return f"{tenant_is(tenant_id)} and position >= 0 and version != {quote(glossary_version(glossary))}"
