"""One id grammar (servicekit.ids) for tenant, customer, conversation and document ids:
what it accepts and refuses, the file names it makes, and every service refusing the
same bad id with INVALID_ARGUMENT on the same field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydantic import TypeAdapter, ValidationError

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import customer_pb2
from gateway.keys import Role, create_key
from gateway.schemas.common import CustomerId, Id
from servicekit.errors import InvalidArgument, Violations, details_from_rpc_error
from servicekit.ids import MAX_CUSTOMER_ID_CHARS, check_customer_id, check_id, file_name, from_file_name, is_id
from servicekit.server import serving
from services.concierge.validation import validate as validate_converse
from services.escalation import app as escalation_app
from services.escalation.settings import EscalationSettings
from services.outreach import app as outreach_app
from services.outreach.settings import OutreachSettings
from services.retrieval.servicer import _validate_glossary
from services.triage import app as triage_app
from services.triage.settings import TriageSettings
from tests.conftest import free_port

ACCEPTED = [
    "demo", "fuzz-kb", "acme", "t1", "acme:eu", "north.eu-1", "a_b", "x", "x" * 128,
    "email-" + "0123456789abcdef" * 2, "web-3f9a1c", "m-17", "docs.setup-guide", "ann@example.com",
    ".hidden", "..",  # valid ids; file_name makes them safe directory names
]
REFUSED = [
    "", " ", " demo", "demo ", "acme eu", "a/b", "../etc", "a\x00b", "x" * 129, "é", "a\\b", 'a"b', "a'b",
    "a|b", "a+b", "a#b", "a%2F", "tenant\n", "😀",
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_accepted_everywhere(value: str) -> None:
    assert is_id(value)
    assert TypeAdapter(Id).validate_python(value) == value
    assert TypeAdapter(CustomerId).validate_python(value) == value


@pytest.mark.parametrize("value", REFUSED)
def test_refused_everywhere(value: str) -> None:
    assert not is_id(value)
    violations = Violations()
    check_id(violations, value, "tenant_id")
    assert [name for name, _ in violations.items] == ["tenant_id"]
    with pytest.raises(ValidationError):
        TypeAdapter(Id).validate_python(value)
    with pytest.raises(ValueError, match="tenant must be"):
        create_key(Path("/nonexistent/keys.json"), value, Role.AGENT)


def test_customer_ids_may_be_longer() -> None:
    violations = Violations()
    check_customer_id(violations, "c" * MAX_CUSTOMER_ID_CHARS, "customer.customer_id")
    check_id(violations, "c" * MAX_CUSTOMER_ID_CHARS, "conversation_id")
    check_customer_id(violations, "c" * (MAX_CUSTOMER_ID_CHARS + 1), "customer.customer_id")
    assert violations.items == [
        ("conversation_id", "at most 128 characters"),
        ("customer.customer_id", f"at most {MAX_CUSTOMER_ID_CHARS} characters"),
    ]


@pytest.mark.parametrize(
    ("value", "name"),
    [("demo", "demo"), ("fuzz-kb", "fuzz-kb"), ("a_b.c", "a_b.c"), ("acme:eu", "acme%3Aeu"),
     ("ann@example.com", "ann%40example.com"), (".", "%2E"), ("..", "%2E."), (".hidden", "%2Ehidden")],
)
def test_file_names_are_safe_and_keep_plain_ids(value: str, name: str) -> None:
    assert file_name(value) == name
    with pytest.raises(ValueError):
        file_name("a/b")


# --- every service refuses the same bad tenant id -------------------------------------

BAD_TENANT = "acme eu"


def _refused_fields(call: Callable[[], Any]) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return [name for name, _ in caught.value.violations]


def test_concierge_and_retrieval_refuse_the_bad_tenant() -> None:
    converse = concierge_pb2.ConverseRequest(
        conversation_id="conv-1", text="hello",
        customer=customer_pb2.CustomerRef(tenant_id=BAD_TENANT, customer_id="web-1"),
    )
    assert _refused_fields(lambda: validate_converse(converse)) == ["customer.tenant_id"]
    glossary = _validate_glossary(retrieval_pb2.SetGlossaryRequest(tenant_id=BAD_TENANT))
    assert [name for name, _ in glossary.items] == ["tenant_id"]


def _triage(channel: grpc.aio.Channel, tenant: str) -> Any:
    return triage_pb2_grpc.TriageServiceStub(channel).DismissSuggestion(triage_pb2.DismissSuggestionRequest(
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id="web-1"), doc_id="guide"))


def _escalation(channel: grpc.aio.Channel, tenant: str) -> Any:
    return escalation_pb2_grpc.EscalationServiceStub(channel).ListHandoffs(
        escalation_pb2.ListHandoffsRequest(tenant_id=tenant))


def _outreach(channel: grpc.aio.Channel, tenant: str) -> Any:
    return outreach_pb2_grpc.OutreachServiceStub(channel).ListDrafts(outreach_pb2.ListDraftsRequest(tenant_id=tenant))


SERVERS: dict[str, tuple[type[Any], Callable[..., Any], Callable[[grpc.aio.Channel, str], Any], str]] = {
    "triage": (TriageSettings, triage_app.servicers, _triage, "customer.tenant_id"),
    "escalation": (EscalationSettings, escalation_app.servicers, _escalation, "tenant_id"),
    "outreach": (OutreachSettings, outreach_app.servicers, _outreach, "tenant_id"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("service", list(SERVERS))
async def test_every_service_refuses_the_bad_tenant_and_serves_a_colon_tenant(service: str, tmp_path: Path) -> None:
    settings_class, factory, call, field = SERVERS[service]
    settings = settings_class(
        port=0, data_dir=tmp_path, llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
        **{f"{name}_addr": f"127.0.0.1:{free_port()}" for name in ("retrieval", "triage", "escalation")},
    )
    async with serving(settings, factory) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            await call(channel, "acme:eu")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(channel, BAD_TENANT)
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in details.field_violations] == [field]


@pytest.mark.parametrize("value", ["demo", "acme:eu", "..", ".hidden", "a@b.c"])
def test_a_file_name_reads_back_as_its_id(value: str) -> None:
    assert from_file_name(file_name(value)) == value
