"""What retrieval's answer units and passages become before the AI may use them: cleaned
of sentences that address the model, cut to what may be said to this customer, and cited."""

from __future__ import annotations

from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.type.v1 import answer_pb2
from servicekit import quoting
from services.concierge import guardrails


def neutralised(unit: retrieval_pb2.SearchHit) -> retrieval_pb2.SearchHit:
    clean = retrieval_pb2.SearchHit()
    clean.CopyFrom(unit)
    clean.text = guardrails.neutralise(unit.text)
    return clean


def for_this_customer(unit: retrieval_pb2.SearchHit, conversation: str) -> retrieval_pb2.SearchHit:
    """A resolved ticket's answer was written to that ticket's customer: only its sentences
    that may be said to this one are kept (none with that customer's dates, amounts, record
    numbers, or actions taken for them). Articles and FAQs speak to everyone: kept whole."""
    if not quoting.case_specific(unit):
        return unit
    clean = retrieval_pb2.SearchHit()
    clean.CopyFrom(unit)
    clean.text = " ".join(quoting.for_this_customer(unit.text, conversation, specific=True))
    return clean


def citation(hit: retrieval_pb2.SearchHit) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=hit.doc_id, chunk_id=hit.chunk_id, title=hit.title, url=hit.url,
        score=round(hit.score, 6), doc_version=hit.version,
    )
