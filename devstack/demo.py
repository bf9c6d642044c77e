"""What `make run` sets up for the demo tenants besides the demo tenant's knowledge base
(kb/demo): the questions the benchmarks and the load generator ask, the demo tenant's
intent model, trained from kb/demo-intents on first start, and the `shop` tenant (the
τ-bench retail store run by demoshop/): its policy in the knowledge base and its API keys."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from gateway.keys import Role, create_key

DEMO_QUESTIONS = [
    "How do I enable two-factor authentication?",
    "Which plans include single sign-on?",
    "What is the API rate limit on the Team plan?",
    "Can I get a refund on a monthly plan?",
    "How do I export my data to S3?",
    "Why do I get E-1042 batch too large after the 4.3 release?",
    "How do I configure SAML single sign-on?",
    "How long do you keep my data on the Free plan?",
    "How do I set up a webhook?",
    "What does error E-2010 mean?",
    "How do I delete a user's data for GDPR?",
]


# --- the demo tenant's intent model ---------------------------------------------------

# Beacon's contact reasons, labelled by the team (kb/demo-intents/README.md).
DEMO_INTENTS = Path(__file__).resolve().parent.parent / "kb" / "demo-intents" / "intents.jsonl"
# Training embeds ~500 examples with both encoders: about a minute on 2 busy cores.
RETRAIN_TIMEOUT_S = 900.0
# How often the retrain operation is polled, and how far it must move before the terminal hears of it.
POLL_S = 1.0
REPORT_EVERY_PERCENT = 25


def serving_intent_model(triage: triage_pb2_grpc.TriageServiceStub, tenant: str) -> str:
    """The intent model version that serves the tenant now ("" when none does)."""
    model: triage_pb2.GetIntentModelResponse = triage.GetIntentModel(
        triage_pb2.GetIntentModelRequest(tenant_id=tenant), timeout=30
    )
    return model.serving_version


def _running_retrain(operations: operations_pb2_grpc.OperationsServiceStub, tenant: str) -> operations_pb2.Operation:
    """The tenant's retrain that is running already (one started before a restart is resumed)."""
    listed: operations_pb2.ListOperationsResponse = operations.ListOperations(
        operations_pb2.ListOperationsRequest(tenant_id=tenant, only_running=True), timeout=30
    )
    if not listed.operations:
        raise LookupError(f"triage refused a retrain of {tenant} but lists none running")
    return listed.operations[0]


def follow_retrain(
    operations: operations_pb2_grpc.OperationsServiceStub,
    operation: operations_pb2.Operation,
    say: Callable[[str], None],
    timeout_s: float = RETRAIN_TIMEOUT_S,
) -> operations_pb2.Operation:
    """Poll a retrain operation until it is done, telling `say` how far it got every quarter or so."""
    deadline = time.monotonic() + timeout_s
    reported = -REPORT_EVERY_PERCENT
    while not operation.done:
        metadata = triage_pb2.RetrainMetadata()
        operation.metadata.Unpack(metadata)
        if metadata.progress_percent >= reported + REPORT_EVERY_PERCENT:
            reported = metadata.progress_percent
            say(f"demo intent model: {metadata.progress_percent}% ({metadata.step})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"retrain {operation.name} not done after {timeout_s:.0f}s")
        time.sleep(POLL_S)
        request = operations_pb2.GetOperationRequest(name=operation.name)
        operation = operations.GetOperation(request, timeout=30).operation
    return operation


def ensure_intent_model(
    triage_addr: str, tenant: str, examples: Path = DEMO_INTENTS, say: Callable[[str], None] = lambda line: None
) -> str:
    """Train the tenant's intent model from `examples` through triage's StartRetrain (following the
    operation until done), unless one serves already (a restart keeps the model it trained, or the
    one a team trained since), or follow the retrain that runs already. Returns a line for the terminal."""
    from services.triage.train import read_examples

    with grpc.insecure_channel(triage_addr, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        triage = triage_pb2_grpc.TriageServiceStub(channel)
        operations = operations_pb2_grpc.OperationsServiceStub(channel)
        serving = serving_intent_model(triage, tenant)
        if serving:
            return f"intent model {serving} serves tenant {tenant}"
        labelled = read_examples(examples)
        started = time.monotonic()
        request = triage_pb2.StartRetrainRequest(
            tenant_id=tenant,
            examples=[
                triage_pb2.LabeledExample(text=text, label=label)
                for text, label in zip(labelled.texts, labelled.labels, strict=True)
            ],
        )
        try:
            operation = triage.StartRetrain(request, timeout=60).operation
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            operation = _running_retrain(operations, tenant)
        operation = follow_retrain(operations, operation, say)
    if operation.WhichOneof("result") != "response":
        failure = operation.error
        raise RuntimeError(f"retrain {operation.name} ended with code {failure.code}: {failure.message}")
    response = triage_pb2.RetrainResponse()
    operation.response.Unpack(response)
    return (
        f"intent model {response.model_version} trained for tenant {tenant} from {len(labelled.texts)} examples "
        f"in {time.monotonic() - started:.0f}s (validation accuracy {response.validation_accuracy:.3f}, "
        f"ECE {response.validation_ece:.3f}); promoted: {response.promoted}"
    )


def train_intents_in_background(
    triage_addr: str, tenant: str, examples: Path = DEMO_INTENTS, stopping: threading.Event | None = None
) -> threading.Thread:
    """ensure_intent_model on a daemon thread: the mesh is ready (and triages, with intent empty)
    while the model trains; it serves from the moment it is promoted. Once `stopping` is set (the
    stack stops, triage with it), a failure is expected and not reported."""

    def run() -> None:
        try:
            outcome = ensure_intent_model(triage_addr, tenant, examples, say=lambda line: print(line, flush=True))
            print(outcome, flush=True)
        except (grpc.RpcError, OSError, ValueError, LookupError, RuntimeError) as error:
            if stopping is None or not stopping.is_set():
                print(f"demo intent model not trained: {error}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=run, name="demo-intent-model", daemon=True)
    thread.start()
    return thread


# --- the shop tenant ---------------------------------------------------------------------

# The τ-bench retail data beside the repository (never copied into it): demoshop loads its
# users, orders and products; wiki.md, the store's policy, is the shop tenant's knowledge base.
SHOP_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tau_retail"
SHOP_POLICY_DOC_ID = "retail-policy"
# One short document: a single stream, embedded in a few seconds even on busy cores.
INGEST_TIMEOUT_S = 120.0


def ingest_policy(retrieval_addr: str, tenant: str, policy: Path) -> str:
    """Ingest one policy file where it lies (a create, or `unchanged` on a restart) as the
    tenant's policy document. Returns a line for the terminal; raises grpc.RpcError or OSError."""
    from services.retrieval.loader import load_file

    document = load_file(policy, tenant, SHOP_POLICY_DOC_ID)
    document.doc_type = retrieval_pb2.DOCUMENT_TYPE_POLICY
    with grpc.insecure_channel(retrieval_addr) as channel:
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        response: retrieval_pb2.IngestDocumentsResponse = retrieval.IngestDocuments(
            iter([retrieval_pb2.IngestDocumentsRequest(document=document)]), timeout=INGEST_TIMEOUT_S
        )
    (result,) = response.results
    outcome = retrieval_pb2.IngestOutcome.Name(result.outcome).removeprefix("INGEST_OUTCOME_").lower()
    return f"{policy.name} ingested for tenant {tenant}: {outcome}, {response.chunks_written} chunks written"


def issue_tenant_keys(path: Path, tenant: str) -> dict[str, str]:
    """Fresh keys of one more demo tenant, one per role (role -> key). Named `devstack-<tenant>-<role>`,
    so that the next start's issue_demo_keys revokes them with the demo tenant's own."""
    return {role.label: create_key(path, tenant, role, f"devstack-{tenant}-{role.label}")[0] for role in Role}
