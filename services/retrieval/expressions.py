"""Milvus filter expressions, built from values rather than from callers' text.

Tenant isolation rests on these: every read, write and delete of the store carries a
`tenant_id == "<tenant>"` clause (or primary keys that start with the tenant), built from a
validated id. Values that enter a filter are quoted with `quote` (Milvus Lite has no filter
templating: it rejects `{name}` params).
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def quote(value: str | int) -> str:
    """A Milvus expression literal. JSON string escaping is what the Milvus parser reads
    (quotes, backslashes and newlines included), so no value can close the literal."""
    return str(int(value)) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


def in_list(values: Iterable[str | int]) -> str:
    return f"[{', '.join(map(quote, values))}]"


def tenant_is(tenant_id: str) -> str:
    return f"tenant_id == {quote(tenant_id)}"
