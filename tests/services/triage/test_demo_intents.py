"""The demo tenant's intent model (issue 19): Beacon's labelled contact reasons ship in
kb/demo-intents, and `make run` trains them through the Retrain RPC when no model serves."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from devstack import demo
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.encoder import Encoder
from services.triage.intent_training import example_violations
from services.triage.policy import load_policy
from services.triage.settings import TriageSettings
from services.triage.train import read_examples

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCH_QUESTIONS = REPO_ROOT / "bench" / "demo_questions.jsonl"


def test_the_training_set_covers_beacons_contact_reasons() -> None:
    examples = read_examples(demo.DEMO_INTENTS)
    counts = Counter(examples.labels)

    assert 12 <= len(counts) <= 20
    assert min(counts.values()) >= 25, counts
    assert {"refund_request", "billing_issue", "security_incident", "human_request", "off_topic"} <= set(counts)
    assert example_violations(examples.texts, examples.labels, min_per_label=5) == []
    assert len({text.lower() for text in examples.texts}) == len(examples.texts), "duplicate utterances"


def test_no_utterance_is_copied_from_the_concierges_held_out_questions() -> None:
    held_out = {json.loads(line)["question"].strip().lower() for line in BENCH_QUESTIONS.read_text().splitlines()}
    examples = read_examples(demo.DEMO_INTENTS)
    assert not held_out & {text.strip().lower() for text in examples.texts}


def test_every_queue_of_the_policy_names_a_label_or_another_tenants_one() -> None:
    # The demo's labels the default policy sends straight to a person.
    queues = load_policy(Path(demo.__file__).parents[1] / "services" / "triage" / "policy.default.json").routing
    labels = set(read_examples(demo.DEMO_INTENTS).labels)
    assert {"billing_issue", "security_incident", "bug_report", "human_request", "complaint"} <= labels
    assert {"billing_issue", "security_incident", "bug_report", "human_request", "complaint"} <= set(
        queues.intent_queues
    )
    # Refund questions are answered from the refund policy, not sent past the AI.
    assert "refund_request" not in queues.intent_queues


@pytest.fixture
async def triage_addr(tmp_path: Path, encoder: Encoder) -> AsyncIterator[str]:
    settings = TriageSettings(port=0, data_dir=tmp_path, retrieval_addr="127.0.0.1:9")
    async with serving(settings, lambda s: servicers(s, encoder)) as running:
        yield f"127.0.0.1:{running.port}"


def ask(text: str) -> triage_pb2.TriageContactRequest:
    return triage_pb2.TriageContactRequest(
        customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="c-1"),
        conversation=conversation_pb2.Conversation(
            conversation_id="conv-1",
            messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text=text)],
        ),
    )


async def test_first_start_trains_the_demo_model_and_a_restart_keeps_it(triage_addr: str) -> None:
    # The devstack calls are blocking gRPC: off the loop that serves them.
    trained = await asyncio.to_thread(demo.ensure_intent_model, triage_addr, "demo")
    assert "trained for tenant demo from 504 examples" in trained
    assert "promoted: True" in trained

    async with grpc.aio.insecure_channel(triage_addr) as channel:
        stub = triage_pb2_grpc.TriageServiceStub(channel)
        response = await stub.TriageContact(ask("how can I switch on 2FA for my login?"))
        assert response.intent.model_version
        assert response.intent.label == "two_factor_auth"
        assert "no_intent_model" not in response.route.reason_codes
        urgent = await stub.TriageContact(ask("someone logged into our account from another country, not us"))
        assert urgent.intent.label == "security_incident"
        # The tenant's own "off_topic" class reads as out of scope, as falling outside every class does.
        poem = await stub.TriageContact(ask("write me a short poem about the sea please"))
        assert poem.intent.label == "off_topic"
        assert poem.intent.out_of_scope

    again = await asyncio.to_thread(demo.ensure_intent_model, triage_addr, "demo")
    assert again == f"intent model {response.intent.model_version} serves tenant demo"
