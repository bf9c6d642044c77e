"""What `make run` sets up for the demo tenant besides its knowledge base
(kb/demo): the questions the benchmarks and the load generator ask, and the
tenant's intent model, trained from kb/demo-intents on first start."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import grpc

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2

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
_PROBE = "How do I turn on two-factor authentication?"


def serving_intent_model(triage: triage_pb2_grpc.TriageServiceStub, tenant: str) -> str:
    """The intent model version that serves the tenant now ("" when none does).

    Asked with an anonymous probe (no customer id: triage remembers no contact for it)."""
    response = triage.TriageContact(
        triage_pb2.TriageContactRequest(
            customer=customer_pb2.CustomerRef(tenant_id=tenant),
            conversation=conversation_pb2.Conversation(
                messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text=_PROBE)]
            ),
        ),
        timeout=RETRAIN_TIMEOUT_S,  # the first call loads the encoders
    )
    return response.intent.model_version


def ensure_intent_model(triage_addr: str, tenant: str, examples: Path = DEMO_INTENTS) -> str:
    """Train the tenant's intent model from `examples` through triage's Retrain RPC, unless one
    serves already (a restart keeps the model it trained, or the one a team trained since).
    Returns a line for the terminal."""
    from services.triage.train import read_examples

    with grpc.insecure_channel(triage_addr, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        triage = triage_pb2_grpc.TriageServiceStub(channel)
        serving = serving_intent_model(triage, tenant)
        if serving:
            return f"intent model {serving} serves tenant {tenant}"
        labelled = read_examples(examples)
        started = time.monotonic()
        response = triage.Retrain(
            triage_pb2.RetrainRequest(
                tenant_id=tenant,
                examples=[
                    triage_pb2.LabeledExample(text=text, label=label)
                    for text, label in zip(labelled.texts, labelled.labels, strict=True)
                ],
            ),
            timeout=RETRAIN_TIMEOUT_S,
        )
    return (
        f"intent model {response.model_version} trained for tenant {tenant} from {len(labelled.texts)} examples "
        f"in {time.monotonic() - started:.0f}s (validation accuracy {response.validation_accuracy:.3f}, "
        f"ECE {response.validation_ece:.3f}); promoted: {response.promoted}"
    )


def train_intents_in_background(triage_addr: str, tenant: str, examples: Path = DEMO_INTENTS) -> threading.Thread:
    """ensure_intent_model on a daemon thread: the mesh is ready (and triages, with intent empty)
    while the model trains; it serves from the moment it is promoted."""

    def run() -> None:
        try:
            print(ensure_intent_model(triage_addr, tenant, examples), flush=True)
        except (grpc.RpcError, OSError, ValueError) as error:
            print(f"demo intent model not trained: {error}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=run, name="demo-intent-model", daemon=True)
    thread.start()
    return thread
