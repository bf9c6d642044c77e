"""Running the real concierge pipeline on labelled questions: shared by the
calibration fit (`python -m tools.calibrate_concierge`) and the quality
benchmark (`bench/concierge_quality.py`).

`eval_stack` starts, in this process on free ports, the real retrieval,
triage, escalation and concierge services with throw-away data directories,
plus the embedded llama.cpp server (devstack.llm_server) when the answer path
uses an LLM, unless an external OpenAI-compatible URL is given; it ingests a
data set's documents and asks each question (after its earlier turns, for a
follow-up) through StreamConverse on a real gRPC channel, timing the first
shown text and the whole answer. Escalation builds its context package
without an LLM (its summary is not what is measured here).

Two data sets (`dataset(name)`):
- "emanual": the Samsung TV manual's sections and its expert questions; an
  answer is right when it cites a gold section and at least 60% of its content
  words (lower-cased, stop words removed) appear in the gold answer.
- "demo": the demo tenant's knowledge base (kb/demo) and the team's labelled
  questions (bench/demo_questions.jsonl); an answer is right when it cites a
  gold document and contains every key fact of the reference answer; any
  answer to an unanswerable question is wrong.
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
from collections.abc import AsyncIterator, Callable, Sequence
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

REPO_ROOT = Path(__file__).resolve().parent.parent
# Each data set is its own tenant, as it would be in production (a tenant may have its own fit).
TENANTS = {"emanual": "emanual", "demo": "demo"}
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
EMANUAL_CORPUS = SHARED_DATA / "emanual_qa" / "smart_tv_remote_manual_corpus.jsonl"
EMANUAL_QUESTIONS = SHARED_DATA / "emanual_qa" / "smart_tv_remote_qa_dev.jsonl"
DEMO_KB = REPO_ROOT / "kb" / "demo"
DEMO_QUESTIONS = REPO_ROOT / "bench" / "demo_questions.jsonl"


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
    """E-Manual's rule: cites a gold section, and >= 60% of the reply's content words are in the gold answer."""
    gold = {safe_id(g) for g in question.get("gold_section_ids") or []}
    if not reply.strip() or not gold & set(cited_section_ids):
        return False
    return agrees(reply, str(question.get("answer", "")))


def judge_demo(reply: str, cited_doc_ids: Sequence[str], question: dict[str, Any]) -> bool:
    """The demo set's rule: cites a gold document and states every key fact (case and
    spacing aside); answering an unanswerable question is always wrong."""
    if not question.get("answerable") or not reply.strip():
        return False
    if not set(question.get("gold_doc_ids") or []) & set(cited_doc_ids):
        return False
    said = " ".join(reply.lower().split())
    return all(" ".join(fact.lower().split()) in said for fact in question.get("key_facts") or [])


@dataclass(frozen=True)
class Dataset:
    """Documents to ingest, labelled questions, and the rule that judges an answer."""

    name: str
    documents: list[retrieval_pb2.Document]
    questions: list[dict[str, Any]]
    judge: Callable[[str, Sequence[str], dict[str, Any]], bool]

    def answerable(self, question: dict[str, Any]) -> bool:
        if "answerable" in question:
            return bool(question["answerable"])
        return bool(question.get("gold_section_ids"))


def dataset(name: str) -> Dataset:
    if name == "emanual":
        documents = [
            retrieval_pb2.Document(
                tenant_id=TENANTS[name], doc_id=safe_id(s["section_id"]), title=s["title"], body=s["text"],
                format=retrieval_pb2.DOCUMENT_FORMAT_TEXT, doc_type=retrieval_pb2.DOCUMENT_TYPE_ARTICLE,
            )
            for s in read_jsonl(EMANUAL_CORPUS)
            if s["text"].strip()
        ]
        return Dataset(name, documents, read_jsonl(EMANUAL_QUESTIONS), judge)
    if name == "demo":
        from services.retrieval.loader import load_folder

        return Dataset(name, load_folder(DEMO_KB, TENANTS[name]), read_jsonl(DEMO_QUESTIONS), judge_demo)
    raise ValueError(f"unknown data set {name!r} (emanual, demo)")


def tenant_of(documents: Sequence[retrieval_pb2.Document]) -> str:
    return documents[0].tenant_id if documents else "bench"


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
    retracted: bool = False
    calibrated: bool = False

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
        self.tenant_id = "bench"
        self.sections = sections
        self.chunks = chunks
        self._asked = 0
        self.timeout_s = 600.0

    async def ask(self, question: str, history: Sequence[str] = ()) -> Outcome:
        """Ask `question` in a new conversation, after the customer's earlier messages `history`."""
        self._asked += 1
        customer = customer_pb2.CustomerRef(tenant_id=self.tenant_id, customer_id=f"eval-{self._asked}")
        for earlier in history:
            await self.concierge.Converse(
                concierge_pb2.ConverseRequest(
                    conversation_id=f"eval-{self._asked}", customer=customer, text=earlier[:4000]
                ),
                timeout=self.timeout_s,
            )
        request = concierge_pb2.ConverseRequest(
            conversation_id=f"eval-{self._asked}", customer=customer, text=question[:4000]
        )
        started = time.perf_counter()
        result_retracted = False
        first: float | None = None
        outcome: concierge_pb2.ConverseResponse | None = None
        try:
            # A generous deadline: a benchmark on a busy CPU must measure slow answers, not drop them.
            async for event in self.concierge.StreamConverse(
                concierge_pb2.StreamConverseRequest(request=request), timeout=self.timeout_s
            ):
                if event.HasField("retraction"):
                    result_retracted = True
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
            reason=concierge_pb2.DecisionReason.Name(outcome.reason).removeprefix("DECISION_REASON_").lower(),
            confidence=outcome.confidence.score,
            cited_section_ids=[c.doc_id for c in outcome.citations],
            signals={s.name: s.value for s in outcome.confidence.signals},
            ttft_ms=round(((first or finished) - started) * 1000, 1),
            latency_ms=round((finished - started) * 1000, 1),
            retracted=result_retracted,
            calibrated=outcome.confidence.calibrated,
        )
        if outcome.handoff_id and outcome.confidence.signals:
            handoff = (
                await self.escalation.GetHandoff(
                    escalation_pb2.GetHandoffRequest(tenant_id=self.tenant_id, handoff_id=outcome.handoff_id)
                )
            ).handoff
            attempt = handoff.context.ai_attempt
            result.candidate_reply = attempt.candidate_answer
            result.candidate_section_ids = [c.doc_id for c in attempt.citations] if attempt.candidate_answer else []
        return result


@contextlib.asynccontextmanager
async def eval_stack(
    documents: Sequence[retrieval_pb2.Document],
    *,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    answer_mode: str = "unit",
    phrasing: str = "off",
    confidence_threshold: float | None = None,
    fits_dir: Path | None = None,
    gate: str = "fit",
    llm_logprobs: bool = False,
    llm_timeout_s: float = 300.0,
    llm_threads: int | None = None,
) -> AsyncIterator[EvalStack]:
    """The mesh on free ports with `documents` ingested. `gate`: "fit" serves the fit of
    the configuration (from `fits_dir`); "closed" runs uncalibrated (every question goes to
    a human, with its candidate); "open" lets every matched question through to be
    answered as it would be (the calibration fit labels these answers), by a stand-in fit
    that scores 1 and says so in its version."""
    from devstack import llm_server
    from servicekit.clients import connect
    from servicekit.llm import LlmClient
    from servicekit.server import serving
    from services.concierge.app import servicers as concierge_servicers
    from services.concierge.confidence import DEFAULT_FITS_DIR
    from services.concierge.settings import ConciergeSettings
    from services.escalation.app import servicers as escalation_servicers
    from services.escalation.settings import EscalationSettings
    from services.retrieval.app import servicers as retrieval_servicers
    from services.retrieval.ingest import ingest_documents
    from services.retrieval.settings import RetrievalSettings
    from services.triage.app import servicers as triage_servicers
    from services.triage.settings import TriageSettings

    llm_model = llm_model or llm_server.MODEL_ALIAS
    llm_used = answer_mode == "generative" or phrasing != "off"
    with contextlib.ExitStack() as processes, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        if llm_base_url is None:
            # Without an LLM in the answer path, a port nobody listens on (refused at once).
            llm_base_url = (
                processes.enter_context(llama_server(REPO_ROOT / "var" / "models", llm_threads))
                if llm_used else f"http://127.0.0.1:{_free_port()}/v1"
            )
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
                llm_timeout_s=llm_timeout_s, answer_mode=answer_mode, phrasing=phrasing,
                fits_dir=fits_dir or DEFAULT_FITS_DIR, allow_uncalibrated=gate == "closed",
                **({"confidence_threshold": confidence_threshold} if confidence_threshold is not None else {}),
            )
            if gate != "fit":
                settings = settings.model_copy(update={"fits_dir": _gate_fits(data / "gate-fits", gate, settings)})
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
            from services.concierge.servicer import configuration

            version = Confidence.load(
                settings.fits_dir, configuration(settings), allow_uncalibrated=settings.allow_uncalibrated
            ).version(tenant_of(documents))
            evaluated = EvalStack(
                concierge_pb2_grpc.ConciergeServiceStub(channels[1]),
                escalation_pb2_grpc.EscalationServiceStub(channels[2]),
                version,
                len(documents),
                ingested.chunks_written,
            )
            evaluated.tenant_id = tenant_of(documents)
            yield evaluated


def _gate_fits(folder: Path, gate: str, settings: Any) -> Path:
    """A fits folder for a closed gate (empty) or an open one (a fit that scores 1)."""
    from services.concierge.confidence import Calibrator, fit_path
    from services.concierge.matching import Signals
    from services.concierge.servicer import configuration

    folder.mkdir(parents=True, exist_ok=True)
    if gate == "open":
        served = configuration(settings)
        feature = next(iter(Signals.__dataclass_fields__))
        stand_in = Calibrator("open-gate-for-calibration", served.id, (feature,), (0.0,), 50.0, (0.0,), (1.0,))
        fit_path(folder, served.id).write_text(stand_in.to_json())
    return folder


def progress(done: int, total: int, started: float) -> None:
    if done == total or done % 10 == 0:
        rate = (time.perf_counter() - started) / max(done, 1)
        print(f"  {done}/{total} questions, {rate:.2f} s each", file=sys.stderr, flush=True)
