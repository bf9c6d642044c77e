"""What could lift the demo set's answered share? Each lever measured the same way, on the
held-out half, without the rest of the mesh.

    python bench/match_levers.py [--llm-gguf PATH] --json out.json

For every demo question the answer-unit search runs as the concierge asks it (hybrid,
top 20, the retrieval service on Milvus Lite with the demo knowledge base; a follow-up or a
message with context is searched with the customer's previous message in front). A lever
picks a unit and gives a confidence; its reply is the unit cut as the concierge cuts it
(matching.compose_reply) and it is right by the demo set's rule (a gold document, every
key fact). Per lever, on the test split: recall@1 of the answerable questions, the AUROC of
its confidence against "right", and its ceiling: the most answerable questions answered
while >= 95% of all answers are right, the threshold chosen on these very questions (so an
upper bound for what a fitted gate reaches; issue 18's bar is 70%).

Levers:
- hybrid: the served ranking (the unit's hybrid score), confidence its score;
- mpnet: all-mpnet-base-v2, the second encoder the project ships, in the dense half of the
  score, confidence the blended score;
- phrasings: the labelled train questions as extra phrasings of their units (the nearest
  train question by all-mpnet-base-v2 names the unit), confidence its similarity;
- llm-choice: the embedded LLM (or --llm-gguf) picks which of the top 5 unit questions (in
  a shuffled order) the customer asks, or none; confidence: the hybrid score, plus 1 when it
  picks the hybrid's top unit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from servicekit.clients import connect
from servicekit.embeddings import SentenceEncoder, mpnet_model_path
from servicekit.server import serving
from services.concierge.matching import compose_reply
from services.retrieval.app import servicers
from services.retrieval.ingest import ingest_documents
from services.retrieval.settings import RetrievalSettings
from tools.concierge_evaluation import dataset, split_of

TARGET_ACCURACY = 0.95
TOP_K = 20
CHOICES = 5


def searched_text(question: dict[str, Any]) -> str:
    history = question.get("history") or []
    return " ".join([history[-1], question["question"]]) if history else question["question"]


async def search_all(questions: list[dict[str, Any]]) -> list[list[retrieval_pb2.SearchHit]]:
    data = dataset("demo")
    tenant = data.documents[0].tenant_id
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        async with serving(RetrievalSettings(port=0, data_dir=Path(tmp)), servicers) as server:
            async with connect(f"127.0.0.1:{server.port}", "aftercare.retrieval.v1.RetrievalService") as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                await ingest_documents(stub, data.documents)
                for question in questions:
                    request = retrieval_pb2.SearchRequest(
                        tenant_id=tenant, query=searched_text(question)[:2000], top_k=TOP_K,
                        mode=retrieval_pb2.SEARCH_MODE_HYBRID, answer_units=True,
                    )
                    found.append(list((await stub.Search(request)).hits))
    return found


def is_right(question: dict[str, Any], unit: retrieval_pb2.SearchHit | None) -> bool:
    if unit is None or not question["answerable"] or unit.doc_id not in question["gold_doc_ids"]:
        return False
    reply = " ".join(compose_reply(searched_text(question), unit.text)[0].lower().split())
    return all(" ".join(fact.lower().split()) in reply for fact in question.get("key_facts") or [])


def figures(name: str, picks: list[tuple[dict[str, Any], retrieval_pb2.SearchHit | None, float]]) -> dict[str, Any]:
    """Recall@1, AUROC and ceiling of one lever over (question, chosen unit, confidence)."""
    scored = [(confidence, is_right(q, unit), bool(q["answerable"])) for q, unit, confidence in picks]
    answerable = sum(1 for _, _, a in scored if a)
    ranked = sorted(scored, key=lambda item: -item[0])
    best, right = 0, 0
    for n, (_, ok, _) in enumerate(ranked, start=1):
        right += ok
        if right / n >= TARGET_ACCURACY:
            best = n
    labels = [ok for _, ok, _ in scored]
    return {
        "lever": name,
        "recall_at_1": round(sum(ok for _, ok, a in scored if a) / answerable, 3),
        "auroc": round(float(roc_auc_score(labels, [c for c, _, _ in scored])), 3) if len(set(labels)) == 2 else None,
        "ceiling_answered_of_answerable": round(sum(1 for _, ok, a in ranked[:best] if a and ok) / answerable, 3),
        "ceiling_answers": best,
    }


class Choice:
    """The LLM's pick among unit questions (llama.cpp in this process, greedy)."""

    def __init__(self, gguf: Path | None) -> None:
        from llama_cpp import Llama

        from devstack.llm_server import disable_extra_buffers, ensure_model

        disable_extra_buffers()
        path = gguf or ensure_model(Path("var/models"))
        self.model = path.name
        self._llm = Llama(model_path=str(path), n_ctx=1024, n_threads=2, verbose=False)

    def __call__(self, customer: str, options: list[str]) -> int:
        listing = "\n".join(f"{n}. {text}" for n, text in enumerate(options, start=1))
        messages = [
            {"role": "system", "content": "You match a customer's message to the help-centre question it asks. "
                                          "Reply with the number of the matching question, or 0 if none asks it."},
            {"role": "user", "content": f"Customer: {customer}\n\nHelp-centre questions:\n{listing}\n\nNumber:"},
        ]
        out = self._llm.create_chat_completion(messages, max_tokens=3, temperature=0)  # type: ignore[arg-type]
        said = re.search(r"\d", str(out["choices"][0]["message"]["content"]))  # type: ignore[index]
        return int(said.group()) if said else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-gguf", type=Path, help="a GGUF for llm-choice (default: the embedded model)")
    parser.add_argument("--no-llm", action="store_true", help="leave llm-choice out")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    started = time.perf_counter()
    questions = dataset("demo").questions
    hits = asyncio.run(search_all(questions))
    test = [(q, h) for q, h in zip(questions, hits, strict=True) if split_of(q) != "train"]
    train = [q for q in questions if split_of(q) == "train" and q["answerable"]]

    levers = [figures("hybrid", [(q, h[0] if h else None, h[0].score if h else 0.0) for q, h in test])]

    mpnet = SentenceEncoder(str(mpnet_model_path(Path("var/models"))))
    queries = mpnet.encode([searched_text(q) for q, _ in test])

    def embedded(unit: retrieval_pb2.SearchHit) -> str:
        # As retrieval embeds a unit: an FAQ's or ticket's question alone, a section with its text.
        faq_or_ticket = unit.doc_type in (retrieval_pb2.DOCUMENT_TYPE_FAQ, retrieval_pb2.DOCUMENT_TYPE_RESOLVED_TICKET)
        return unit.unit_question if faq_or_ticket else f"{unit.unit_question}\n{unit.text}"

    texts = sorted({embedded(u) for _, found in test for u in found})
    by_text = dict(zip(texts, mpnet.encode(texts), strict=True))
    picks = []
    for vector, (q, found) in zip(queries, test, strict=True):
        if not found:
            picks.append((q, None, 0.0))
            continue
        unit_vectors = [by_text[embedded(u)] for u in found]
        # The hybrid score's keyword half kept; its dense half from the second encoder.
        keyword = [2 * u.score - u.similarity for u in found]
        blended = [0.5 * float(vector @ v) + 0.5 * k for v, k in zip(unit_vectors, keyword, strict=True)]
        best = int(np.argmax(blended))
        picks.append((q, found[best], blended[best]))
    levers.append(figures("mpnet", picks))

    train_vectors = mpnet.encode([q["question"] for q in train])
    picks = []
    for vector, (q, found) in zip(queries, test, strict=True):
        similarity = train_vectors @ vector
        nearest = train[int(np.argmax(similarity))]
        unit = next((u for u in found if u.doc_id in nearest["gold_doc_ids"]), None)
        picks.append((q, unit, float(np.max(similarity))))
    levers.append(figures("phrasings", picks))

    model = ""
    if not args.no_llm:
        choose = Choice(args.llm_gguf)
        model = choose.model
        picks = []
        for q, found in test:
            options = list({u.unit_question: u for u in found}.values())[:CHOICES]
            if not options:
                picks.append((q, None, 0.0))
                continue
            shuffled = options[:]
            random.Random(q["id"]).shuffle(shuffled)
            chosen = choose(searched_text(q), [u.unit_question for u in shuffled])
            unit = shuffled[chosen - 1] if 0 < chosen <= len(shuffled) else None
            agrees = unit is not None and unit.chunk_id == found[0].chunk_id
            picks.append((q, unit or found[0], found[0].score + (1.0 if agrees else 0.0)))
        levers.append(figures("llm-choice", picks))

    result = {"questions": len(test), "answerable": sum(1 for q, _ in test if q["answerable"]), "llm_model": model,
              "levers": levers, "seconds": round(time.perf_counter() - started, 1)}
    print(f"demo test split: {result['questions']} questions, {result['answerable']} answerable")
    print(f"{'lever':12} {'recall@1':>9} {'AUROC':>6} {'ceiling (answerable answered at >= 95% right)':>47}")
    for lever in levers:
        auc = f"{lever['auroc']:.3f}" if lever["auroc"] is not None else "-"
        ceiling = lever["ceiling_answered_of_answerable"]
        print(f"{lever['lever']:12} {lever['recall_at_1']:9.3f} {auc:>6} {ceiling:47.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
