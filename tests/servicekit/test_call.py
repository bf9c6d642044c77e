"""`python -m servicekit.call`, the project's grpcurl: lists services and methods by
reflection and calls any of them with JSON, against a real server on a real port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aftercare.retrieval.v1 import retrieval_pb2
from servicekit.call import main
from servicekit.errors import InvalidArgument
from tests.gateway.conftest import Mesh, start_mesh


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with start_mesh(tmp_path / "api_keys.json") as started:
        yield started


async def _call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    # The command is synchronous; the server runs on this event loop.
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_lists_services_and_methods_by_reflection(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await _call(capsys, mesh.address)
    assert code == 0
    services = out.split()
    assert "aftercare.retrieval.v1.RetrievalService" in services and "grpc.health.v1.Health" in services

    code, out, _ = await _call(capsys, mesh.address, "aftercare.retrieval.v1.RetrievalService")
    assert code == 0
    assert "aftercare.retrieval.v1.RetrievalService/Search" in out.split()


async def test_calls_a_method_with_json_and_prints_the_answer_as_json(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh.retrieval.search.outcome = retrieval_pb2.SearchResponse(
        hits=[{"doc_id": "kb-keys", "title": "Rotate an API key"}], embedding_model="all-MiniLM-L6-v2"
    )
    code, out, err = await _call(
        capsys, "-d", '{"tenant_id": "demo", "query": "rotate an API key", "top_k": 3}',
        mesh.address, "aftercare.retrieval.v1.RetrievalService/Search",
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["embedding_model"] == "all-MiniLM-L6-v2"
    assert answer["hits"][0]["doc_id"] == "kb-keys"
    (sent,) = mesh.retrieval.search.requests
    assert (sent.tenant_id, sent.query, sent.top_k) == ("demo", "rotate an API key", 3)

    code, out, err = await _call(
        capsys, "-d", '{"service": "aftercare.retrieval.v1.RetrievalService"}', mesh.address,
        "grpc.health.v1.Health/Check",
    )
    assert (code, json.loads(out)) == (0, {"status": "SERVING"}), err


async def test_a_client_stream_takes_a_json_array(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    documents = [{"document": {"doc_id": f"doc-{n}", "title": f"Doc {n}"}} for n in (1, 2)]
    code, _, err = await _call(
        capsys, "-d", json.dumps(documents), mesh.address, "aftercare.retrieval.v1.RetrievalService/IngestDocuments"
    )
    assert code == 0, err
    (sent,) = mesh.retrieval.ingest_documents.requests
    assert [r.document.doc_id for r in sent] == ["doc-1", "doc-2"]


async def test_a_refused_call_prints_its_status_and_field_violations(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh.retrieval.search.outcome = InvalidArgument([("query", "must not be empty")])
    code, out, err = await _call(
        capsys, "-d", '{"tenant_id": "demo"}', mesh.address, "aftercare.retrieval.v1.RetrievalService/Search"
    )
    assert (code, out) == (1, "")
    assert "INVALID_ARGUMENT" in err and "must not be empty" in err and '"field": "query"' in err


async def test_mistakes_are_named(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await _call(capsys, mesh.address, "aftercare.retrieval.v1.RetrievalService/Serch")
    assert code == 2 and "no method 'Serch'" in err
    code, _, err = await _call(capsys, mesh.address, "aftercare.nothing.v1.NoService/Call")
    assert code == 2 and "not served" in err
    code, _, err = await _call(
        capsys, "-d", '{"tenant": "demo"}', mesh.address, "aftercare.retrieval.v1.RetrievalService/Search"
    )
    assert code == 2 and "bad request" in err
