"""Which version of each document searches may see: the store's copy of its records.

A search needs the current version of every document it finds, to drop chunks of a
version being written or replaced. The store keeps each tenant's documents, doc id ->
(current version key, chunks), read at open and updated by its own writes. Milvus Lite
has one process (its lock file sees to it), so there the copy is exact, and stats read it
too (Lite counts by scanning rows). With a server, other replicas write too: see
`CurrentVersions.of` for when the copy is trusted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymilvus import MilvusClient

from services.retrieval.documents import chunk_version, record_key

# With a server, how long a document's version read earlier is trusted by searches that
# find only its chunks: it bounds how long chunks left by another replica's crash in the
# middle of a delete can show (a replace elsewhere is seen at once, see CurrentVersions.of).
VERSIONS_TRUSTED_S = 300.0


@dataclass
class CurrentVersions:
    client: MilvusClient
    # The records collection (`<name>_documents`).
    documents: str
    # Milvus Lite: this process is the only writer, so the copy is exact.
    exact: bool
    _versions: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    # Server only: when each copied version was last read from the server (monotonic s).
    _read_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def tenant(self, tenant_id: str) -> dict[str, tuple[str, int]]:
        """The copy of one tenant's documents: doc id -> (version key, chunks)."""
        return self._versions.get(tenant_id, {})

    def copy(self, tenant_id: str, doc_id: str, version: tuple[str, int] | None, read_at: float) -> None:
        """Keep (version key, chunks) as the document's current version; None: it has none."""
        if version is None:
            self._versions.get(tenant_id, {}).pop(doc_id, None)
            self._read_at.pop((tenant_id, doc_id), None)
            return
        self._versions.setdefault(tenant_id, {})[doc_id] = version
        if not self.exact:
            self._read_at[(tenant_id, doc_id)] = read_at

    def of(self, tenant_id: str, found: Iterable[dict[str, Any]]) -> dict[str, str]:
        """The current version of each document that has chunks among `found` (search hits)."""
        versions_found: dict[str, set[str]] = {}
        for raw in found:
            entity = raw["entity"]
            versions_found.setdefault(entity["doc_id"], set()).add(chunk_version(entity["chunk_id"]))
        known = self._versions.get(tenant_id, {})
        if not self.exact:
            # With a server, the copy is trusted for a document only while a search finds
            # chunks of the copied version alone, for at most VERSIONS_TRUSTED_S: a chunk of
            # any other version (another replica's replace or new document) makes it read the
            # record again, in one call for all such documents. So a replace elsewhere is
            # seen as soon as its new chunks are found; until then, the old version stays
            # searchable (never both, never neither) as long as its chunks are there.
            now = time.monotonic()
            unsure = sorted(
                doc_id
                for doc_id, versions in versions_found.items()
                if doc_id not in known
                or versions != {known[doc_id][0]}
                or now - self._read_at.get((tenant_id, doc_id), 0.0) > VERSIONS_TRUSTED_S
            )
            if unsure:
                rows = self.client.get(
                    self.documents,
                    ids=[record_key(tenant_id, doc_id) for doc_id in unsure],
                    output_fields=["doc_id", "version_key", "chunk_count"],
                )
                fresh = {row["doc_id"]: (row["version_key"], int(row["chunk_count"])) for row in rows}
                for doc_id in unsure:
                    self.copy(tenant_id, doc_id, fresh.get(doc_id), now)
                known = self._versions.get(tenant_id, {})
        return {doc_id: known[doc_id][0] for doc_id in versions_found if doc_id in known}
