"""Retrieval quality: ingest a corpus through the retrieval service, ask every
question, and report Recall@1/5/10 and MRR against the gold sections for the
dense, keyword and hybrid modes, and for reciprocal rank fusion (k=60) of the
dense and keyword rankings, the alternative to the service's score fusion.

    python bench/retrieval_recall.py \\
        --corpus ../shared/data/emanual_qa/smart_tv_remote_manual_corpus.jsonl \\
        --questions ../shared/data/emanual_qa/smart_tv_remote_qa_dev.jsonl --json out.json

The service runs in this process on a free port with a throw-away data
directory (Milvus Lite), and is called through a real gRPC channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from servicekit.clients import connect
from servicekit.server import serving
from services.retrieval.app import servicers
from services.retrieval.ingest import ingest_documents
from services.retrieval.settings import RetrievalSettings

MODES = {
    "dense": retrieval_pb2.SEARCH_MODE_DENSE,
    "keyword": retrieval_pb2.SEARCH_MODE_KEYWORD,
    "hybrid": retrieval_pb2.SEARCH_MODE_HYBRID,
}
TENANT = "bench"
K = (1, 5, 10)
# The usual constant of reciprocal rank fusion (Cormack et al., 2009).
RRF_K = 60


def safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "_", raw)[:128]


def read_jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rrf(*rankings: list[retrieval_pb2.SearchHit], k: int = RRF_K) -> list[retrieval_pb2.SearchHit]:
    """Reciprocal rank fusion of chunk rankings: sum of 1 / (k + rank) over the rankings."""
    scores: dict[str, float] = {}
    hits: dict[str, retrieval_pb2.SearchHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
            hits.setdefault(hit.chunk_id, hit)
    return [hits[chunk_id] for chunk_id in sorted(scores, key=lambda c: scores[c], reverse=True)]


def ranked_docs(hits: list[retrieval_pb2.SearchHit]) -> list[str]:
    """Document ids in rank order, each once (several chunks may come from one section)."""
    seen: list[str] = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.append(hit.doc_id)
    return seen


async def run(corpus: Path, questions_path: Path, top_k: int) -> dict[str, object]:
    sections = read_jsonl(corpus)
    questions = [q for q in read_jsonl(questions_path) if q.get("gold_section_ids")]
    documents = [
        retrieval_pb2.Document(
            tenant_id=TENANT, doc_id=safe_id(s["section_id"]), title=s["title"], body=s["text"],
            format=retrieval_pb2.DOCUMENT_FORMAT_TEXT, doc_type=retrieval_pb2.DOCUMENT_TYPE_ARTICLE,
        )
        for s in sections
        if s["text"].strip()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        settings = RetrievalSettings(port=0, data_dir=Path(tmp))
        async with serving(settings, servicers) as server:
            async with connect(f"127.0.0.1:{server.port}", "aftercare.retrieval.v1.RetrievalService") as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                started = time.perf_counter()
                ingested = await ingest_documents(stub, documents)
                ingest_s = time.perf_counter() - started
                rankings: dict[str, list[list[retrieval_pb2.SearchHit]]] = {}
                latency_ms: dict[str, float] = {}
                for mode, mode_value in MODES.items():
                    rankings[mode] = []
                    started = time.perf_counter()
                    for question in questions:
                        response = await stub.Search(
                            retrieval_pb2.SearchRequest(
                                tenant_id=TENANT, query=question["question"][:2000], top_k=top_k, mode=mode_value
                            )
                        )
                        rankings[mode].append(list(response.hits))
                    latency_ms[mode] = round((time.perf_counter() - started) * 1000 / len(questions), 2)
    # The service's hybrid fuses scores; reciprocal rank fusion of its own dense and keyword
    # rankings is measured beside it, as the alternative it was chosen over.
    rankings["rrf"] = [rrf(dense, kw) for dense, kw in zip(rankings["dense"], rankings["keyword"], strict=True)]
    recall: dict[str, dict[str, float]] = {f"recall_at_{k}": {} for k in K}
    mrr: dict[str, float] = {}
    for mode, ranked in rankings.items():
        hits_at = dict.fromkeys(K, 0)
        reciprocal = 0.0
        for question, hits in zip(questions, ranked, strict=True):
            gold = {safe_id(g) for g in question["gold_section_ids"]}
            rank = next((i for i, doc in enumerate(ranked_docs(hits), start=1) if doc in gold), None)
            for k in K:
                hits_at[k] += int(rank is not None and rank <= k)
            reciprocal += 1.0 / rank if rank else 0.0
        for k in K:
            recall[f"recall_at_{k}"][mode] = round(hits_at[k] / len(questions), 4)
        mrr[mode] = round(reciprocal / len(questions), 4)
    return {
        **recall,
        "mrr": mrr,
        "mean_search_ms_incl_embedding": latency_ms,
        "questions": len(questions),
        "sections": len(documents),
        "chunks": ingested.chunks_written,
        "ingest_s": round(ingest_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="JSONL with section_id, title, text")
    parser.add_argument("--questions", type=Path, required=True, help="JSONL with question, gold_section_ids")
    parser.add_argument("--top-k", type=int, default=30, help="hits asked per query (chunks, before dedup)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures = asyncio.run(run(args.corpus, args.questions, args.top_k))
    print(f"{figures['questions']} questions, {figures['sections']} sections, {figures['chunks']} chunks, "
          f"ingest {figures['ingest_s']} s")
    print(f"{'mode':8} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'MRR':>7} {'ms/query':>9}")
    for mode in [*MODES, "rrf"]:
        print(
            f"{mode:8} {figures['recall_at_1'][mode]:7.3f} {figures['recall_at_5'][mode]:7.3f} "  # type: ignore[index]
            f"{figures['recall_at_10'][mode]:7.3f} {figures['mrr'][mode]:7.3f} "  # type: ignore[index]
            + (f"{figures['mean_search_ms_incl_embedding'][mode]:9.2f}" if mode in MODES else f"{'-':>9}")  # type: ignore[index]
        )
    print("rrf: reciprocal rank fusion (k=60) of the dense and keyword rankings above, for comparison")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
