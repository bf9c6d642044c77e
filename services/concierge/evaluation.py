"""Running the real concierge pipeline on labelled questions: shared by the
calibration fit (`python -m services.concierge.calibrate`) and the quality
benchmark (`bench/concierge_quality.py`).

`eval_stack` starts, in this process on free ports, the real retrieval,
triage, escalation and concierge services with throw-away data directories,
plus the embedded llama.cpp server (devstack.llm_server) unless an external
OpenAI-compatible URL is given; it ingests the corpus and asks each question
through StreamConverse on a real gRPC channel, timing the first delta and
the whole answer. Escalation builds its context package without an LLM
(its summary is not what is measured here, and it would double the run time).

`judge` is the issue's rule: an answer is correct when it cites a gold
section and at least 60% of its content words (lower-cased, stop words
removed) appear in the gold answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.type.v1 import customer_pb2
from servicekit.judging import agrees

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TENANT = "bench"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "_", raw)[:128]


def split_of(question: dict[str, Any]) -> str:
    """The data set's own split when it has one; else a fixed hash split of the
    question id: half "train" (the calibration fit), half "dev" (evaluation)."""
    if question.get("split"):
        return "train" if question["split"] in ("train", "fit") else "dev"
    key = str(question.get("question_id") or question["question"])
    return "train" if int(hashlib.md5(key.encode()).hexdigest()[:8], 16) % 2 == 0 else "dev"


def in_fixed_order(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Questions in a fixed pseudo-random order, so that --limit N takes a fair
    mix of question types (the files list them grouped by type)."""
    return sorted(questions, key=lambda q: hashlib.sha256(str(q.get("question_id") or q["question"]).encode()).digest())


SPLIT_RULE = "the question's own split field, else md5(question_id)[:8] % 2: 0 train (fit), 1 dev (evaluation)"


def judge(reply: str, cited_section_ids: Sequence[str], question: dict[str, Any]) -> bool:
    """The issue's rule: cites a gold section, and >= 60% of the reply's content words are in the gold answer."""
    gold = {safe_id(g) for g in question.get("gold_section_ids") or []}
    if not reply.strip() or not gold & set(cited_section_ids):
        return False
    return agrees(reply, str(question.get("answer", "")))


@dataclass
class Outcome:
    """One question asked through the concierge."""

    question: str
    reply: str
    decision: str
    reason: str
    confidence: float
    cited_section_ids: list[str]
    signals: dict[str, float]
    ttft_ms: float
    latency_ms: float
    # What the AI would have answered when it handed over instead (read back from the handoff).
    candidate_reply: str = ""
    candidate_section_ids: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.decision == "answered"

    @property
    def attempt_reply(self) -> str:
        return self.reply if self.answered else self.candidate_reply

    @property
    def attempt_section_ids(self) -> list[str]:
        return self.cited_section_ids if self.answered else self.candidate_section_ids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def llama_server(models_dir: Path, threads: int | None = None) -> Any:
    """The embedded llama.cpp server with the Gemma 3 270M GGUF (devstack's
    command); yields its base URL. `threads` overrides its thread count: on a
    small CPU shared with other processes one thread decodes several times
    faster than two, whose OpenMP workers spin waiting for each other."""
    from devstack import llm_server

    model = llm_server.ensure_model(models_dir)
    port = _free_port()
    argv = llm_server.command(model, port)
    if threads:
        argv[argv.index("--n_threads") + 1] = str(threads)
    log_file = tempfile.TemporaryFile()
    # The server dies with this process, even when it is killed without cleanup.
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log_file.seek(0)
                raise RuntimeError(f"llama.cpp server exited: {log_file.read()[-2000:].decode(errors='replace')}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp server did not start in 120 s")
            time.sleep(0.3)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


class EvalStack:
    def __init__(
        self,
        concierge: concierge_pb2_grpc.ConciergeServiceStub,
        escalation: escalation_pb2_grpc.EscalationServiceStub,
        calibration_version: str,
        sections: int,
        chunks: int,
    ):
        self.concierge = concierge
        self.escalation = escalation
        self.calibration_version = calibration_version
        self.sections = sections
        self.chunks = chunks
        self._asked = 0
        self.timeout_s = 600.0

    async def ask(self, question: str) -> Outcome:
        self._asked += 1
        customer = customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=f"eval-{self._asked}")
        request = concierge_pb2.ConverseRequest(
            conversation_id=f"eval-{self._asked}", customer=customer, text=question[:4000]
        )
        started = time.perf_counter()
        first: float | None = None
        outcome: concierge_pb2.ConverseResponse | None = None
        try:
            # A generous deadline: a benchmark on a busy CPU must measure slow answers, not drop them.
            async for event in self.concierge.StreamConverse(
                concierge_pb2.StreamConverseRequest(request=request), timeout=self.timeout_s
            ):
                if event.HasField("delta") and first is None:
                    first = time.perf_counter()
                if event.HasField("outcome"):
                    outcome = event.outcome
        except grpc.aio.AioRpcError as error:
            finished = time.perf_counter()
            elapsed = round((finished - started) * 1000, 1)
            return Outcome(question, "", "error", error.code().name.lower(), 0.0, [], {}, elapsed, elapsed)
        finished = time.perf_counter()
        assert outcome is not None
        result = Outcome(
            question=question,
            reply=outcome.reply,
            decision=concierge_pb2.Decision.Name(outcome.decision).removeprefix("DECISION_").lower(),
            reason=outcome.decision_reason,
            confidence=outcome.confidence.score,
            cited_section_ids=[c.doc_id for c in outcome.citations],
            signals={s.name: s.value for s in outcome.confidence.signals},
            ttft_ms=round(((first or finished) - started) * 1000, 1),
            latency_ms=round((finished - started) * 1000, 1),
        )
        if outcome.handoff_id and outcome.confidence.signals:
            handoff = (
                await self.escalation.GetHandoff(
                    escalation_pb2.GetHandoffRequest(tenant_id=TENANT, handoff_id=outcome.handoff_id)
                )
            ).handoff
            attempt = handoff.context.ai_attempt
            result.candidate_reply = attempt.candidate_answer
            result.candidate_section_ids = [c.doc_id for c in attempt.citations] if attempt.candidate_answer else []
        return result


@contextlib.asynccontextmanager
async def eval_stack(
    corpus: Path,
    *,
    llm_base_url: str | None = None,
    llm_model: str = "gemma-3-270m",
    answer_mode: str = "extractive",
    confidence_threshold: float = 0.85,
    calibration_file: Path | None = None,
    llm_logprobs: bool = False,
    llm_timeout_s: float = 300.0,
    llm_threads: int | None = None,
) -> AsyncIterator[EvalStack]:
    from servicekit.clients import connect
    from servicekit.llm import LlmClient
    from servicekit.server import serving
    from services.concierge.app import servicers as concierge_servicers
    from services.concierge.confidence import DEFAULT_PATH
    from services.concierge.settings import ConciergeSettings
    from services.escalation.app import servicers as escalation_servicers
    from services.escalation.settings import EscalationSettings
    from services.retrieval.app import servicers as retrieval_servicers
    from services.retrieval.ingest import ingest_documents
    from services.retrieval.settings import RetrievalSettings
    from services.triage.app import servicers as triage_servicers
    from services.triage.settings import TriageSettings

    sections = read_jsonl(corpus)
    documents = [
        retrieval_pb2.Document(
            tenant_id=TENANT, doc_id=safe_id(s["section_id"]), title=s["title"], body=s["text"],
            format=retrieval_pb2.DOCUMENT_FORMAT_TEXT, doc_type=retrieval_pb2.DOCUMENT_TYPE_ARTICLE,
        )
        for s in sections
        if s["text"].strip()
    ]
    with contextlib.ExitStack() as processes, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        if llm_base_url is None:
            llm_base_url = processes.enter_context(llama_server(REPO_ROOT / "var" / "models", llm_threads))
        async with contextlib.AsyncExitStack() as stack:
            retrieval = await stack.enter_async_context(
                serving(RetrievalSettings(port=0, data_dir=data, milvus_uri=""), retrieval_servicers)
            )
            retrieval_addr = f"127.0.0.1:{retrieval.port}"
            # Sentiment by the lexicon alone: it plays no part in the concierge's answer.
            lexicon = {"sentiment_model": "vader"} if "sentiment_model" in TriageSettings.model_fields else {}
            triage = await stack.enter_async_context(
                serving(
                    TriageSettings(  # type: ignore[call-arg]
                        port=0, data_dir=data, retrieval_addr=retrieval_addr, database_url="", **lexicon
                    ),
                    triage_servicers,
                )
            )
            triage_addr = f"127.0.0.1:{triage.port}"
            # No LLM for the handoff context package: a port nobody listens on refuses at once.
            no_llm = LlmClient(f"http://127.0.0.1:{_free_port()}/v1", llm_model, timeout_s=0.5)
            stack.push_async_callback(no_llm.aclose)
            escalation_settings = EscalationSettings(  # type: ignore[call-arg]
                port=0, data_dir=data, retrieval_addr=retrieval_addr, triage_addr=triage_addr,
                llm_base_url="http://unused/v1", database_url="",
            )
            escalation = await stack.enter_async_context(
                serving(escalation_settings, lambda s: escalation_servicers(s, llm=no_llm))  # type: ignore[arg-type]
            )
            settings = ConciergeSettings(  # type: ignore[call-arg]
                port=0, data_dir=data, database_url="",
                retrieval_addr=retrieval_addr, triage_addr=triage_addr,
                escalation_addr=f"127.0.0.1:{escalation.port}",
                llm_base_url=llm_base_url, llm_model=llm_model, llm_logprobs=llm_logprobs,
                llm_timeout_s=llm_timeout_s, answer_mode=answer_mode,
                confidence_threshold=confidence_threshold,
                calibration_file=calibration_file or DEFAULT_PATH,
            )
            concierge = await stack.enter_async_context(serving(settings, concierge_servicers))
            channels = [
                await stack.enter_async_context(connect(address, service))
                for address, service in (
                    (retrieval_addr, "aftercare.retrieval.v1.RetrievalService"),
                    (f"127.0.0.1:{concierge.port}", "aftercare.concierge.v1.ConciergeService"),
                    (f"127.0.0.1:{escalation.port}", "aftercare.escalation.v1.EscalationService"),
                )
            ]
            ingested = await ingest_documents(retrieval_pb2_grpc.RetrievalServiceStub(channels[0]), documents)
            from services.concierge.confidence import Confidence

            # The fit the service serves (the heuristic when the file is for another mode or prompt).
            version = Confidence.load(settings.calibration_file, settings.answer_mode).version
            yield EvalStack(
                concierge_pb2_grpc.ConciergeServiceStub(channels[1]),
                escalation_pb2_grpc.EscalationServiceStub(channels[2]),
                version,
                len(documents),
                ingested.chunks_written,
            )


def progress(done: int, total: int, started: float) -> None:
    if done == total or done % 10 == 0:
        rate = (time.perf_counter() - started) / max(done, 1)
        print(f"  {done}/{total} questions, {rate:.2f} s each", file=sys.stderr, flush=True)
