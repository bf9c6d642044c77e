"""The knowledge base: upload, delete and search documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aftercare.retrieval.v1 import retrieval_pb2
from gateway.auth import AdminKey, AgentKey, ChannelKey
from gateway.deps import BackendsDep, DocId, TenantId
from gateway.problems import NotFoundProblem, problem_responses
from gateway.schemas.knowledge import (
    DeleteDocumentReply,
    DocumentListReply,
    SearchReply,
    SearchRequest,
    UploadDocumentsReply,
    UploadDocumentsRequest,
)

router = APIRouter(tags=["knowledge base"])


@router.post(
    "/v1/tenants/{tenant_id}/kb/search",
    response_model=SearchReply,
    summary="Search the tenant's knowledge base.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def search_kb(tenant_id: TenantId, body: SearchRequest, key: ChannelKey, backends: BackendsDep) -> SearchReply:
    response = await backends.retrieval.stub.Search(body.to_proto(key.tenant_id))
    return SearchReply.from_proto(response)


@router.post(
    "/v1/tenants/{tenant_id}/kb/documents",
    response_model=UploadDocumentsReply,
    summary="Upload documents (one ingestion stream); an existing doc_id is replaced, an unchanged one skipped.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def upload_documents(
    tenant_id: TenantId, body: UploadDocumentsRequest, key: AdminKey, backends: BackendsDep
) -> UploadDocumentsReply:
    requests = [retrieval_pb2.IngestDocumentsRequest(document=d.to_proto(key.tenant_id)) for d in body.documents]
    response = await backends.retrieval.stub.IngestDocuments(iter(requests))
    return UploadDocumentsReply.from_proto(response)


@router.get(
    "/v1/tenants/{tenant_id}/kb/documents",
    response_model=DocumentListReply,
    summary="The tenant's documents (without bodies), in doc id order, a page at a time.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_documents(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str, Query(max_length=512)] = "",
) -> DocumentListReply:
    request = retrieval_pb2.ListDocumentsRequest(tenant_id=key.tenant_id, page_size=page_size, page_token=page_token)
    response = await backends.retrieval.stub.ListDocuments(request)
    return DocumentListReply.from_proto(response)


@router.delete(
    "/v1/tenants/{tenant_id}/kb/documents/{doc_id}",
    response_model=DeleteDocumentReply,
    summary="Delete a document and all its chunks.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def delete_document(
    tenant_id: TenantId, doc_id: DocId, key: AdminKey, backends: BackendsDep
) -> DeleteDocumentReply:
    request = retrieval_pb2.DeleteDocumentsRequest(tenant_id=key.tenant_id, doc_ids=[doc_id])
    response = await backends.retrieval.stub.DeleteDocuments(request)
    if doc_id not in response.deleted_doc_ids:
        raise NotFoundProblem(f"No document {doc_id} in this knowledge base.", "DOCUMENT_NOT_FOUND")
    return DeleteDocumentReply(doc_id=doc_id)
