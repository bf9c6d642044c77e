"""What a reviewer reads in a draft: no unfilled placeholder, evidence written for people
(rounded, with units), each cited document once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aftercare.outreach.v1 import outreach_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from servicekit.database import make_engine
from services.outreach import drafting
from services.outreach.drafting import FindingFacts, Recipient, UnfilledPlaceholder
from services.outreach.findings import EvidenceItem, percent_text
from services.outreach.knowledge import Passage, one_per_document, suggested_fix
from services.outreach.servicer import OutreachServicer
from services.outreach.store import OutreachStore
from tests.services.outreach.conftest import FakeLlm
from tests.services.outreach.test_detection import AS_OF, EXPORTS, FIX_TEXT, build, detect, servicer
from tests.services.outreach.test_drafts import NOON, contacts

# A number a person would not write: three or more decimals.
RAW_FLOAT = re.compile(r"\d\.\d{3,}")
TICKET = "https://docs.beacon.example/t"


def facts(**overrides: object) -> FindingFacts:
    values: dict[str, object] = {
        "kind": "RISK_KIND_ERROR_SPIKE", "cause": "E-3001 on GET /v2/exports",
        "statements": [f"{EXPORTS} error rate 41% over the last 3 days (120 failed calls), up from 0.36% in the "
                       "28 days before."],
        "feature": "exports", "endpoint": EXPORTS, "error_code": "E-3001", "release": "",
        "fix": "Grant the Beacon export role s3:PutObject on the bucket, then retry the export.",
        "sources": [("Export to S3", "https://docs.beacon.example/s3", "Grant the Beacon export role ...")],
    }
    values.update(overrides)
    return FindingFacts(**values)  # type: ignore[arg-type]


def recipient(contact_name: str = "Ana", csm_name: str = "Maya Lin") -> Recipient:
    return Recipient("acct-1", "Acme", contact_name, csm_name)


# --- placeholders -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [None, recipient(""), recipient("   "), recipient("{first_name}")])
def test_without_a_usable_name_the_greeting_is_neutral(who: Recipient | None) -> None:
    message = drafting.compose(drafting.template_paragraph(facts()), facts(), who, "template")
    assert message.body.startswith("Hi there,\n\n")
    assert drafting.placeholders(message.body) == []


def test_a_known_name_is_greeted_and_a_bad_csm_name_is_left_out() -> None:
    message = drafting.compose("Text.", facts(), recipient("Ana", csm_name="{csm}"), "template")
    assert message.body.startswith("Hi Ana,\n\n")
    assert message.body.endswith("Best regards,\nCustomer Success")
    assert drafting.placeholders(message.body) == []


@pytest.mark.parametrize("paragraph", [
    "Dear {first_name}, your exports fail.", "Hello {{ company }}, your exports fail.",
    "Hi [Customer Name], your exports fail.", "Hi ${name}, your exports fail.",
])
def test_a_message_with_an_unfilled_placeholder_is_refused(paragraph: str) -> None:
    with pytest.raises(UnfilledPlaceholder):
        drafting.compose(paragraph, facts(), recipient(), "template")


def test_a_broken_greeting_template_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drafting, "_greeting", lambda _: "Hi {first_name},")
    with pytest.raises(UnfilledPlaceholder, match="first_name"):
        drafting.compose("Text.", facts(), None, "template")


def test_braces_quoted_from_the_facts_are_text_not_placeholders() -> None:
    quoted = facts(fix="Retry GET /v2/exports/{export_id} once the role has s3:PutObject.")
    message = drafting.compose(drafting.template_paragraph(quoted), quoted, recipient(), "template")
    assert "/v2/exports/{export_id}" in message.body


def test_an_llm_paragraph_with_a_placeholder_is_not_grounded() -> None:
    paragraph = ("Hi [Customer Name], calls to GET /v2/exports fail with E-3001: grant the Beacon export role "
                 "s3:PutObject on the bucket, then retry the export.")
    assert "placeholder" in drafting.grounding_problems(paragraph, facts())
    assert "placeholder" not in drafting.grounding_problems(paragraph.replace("Hi [Customer Name], c", "C"), facts())


def test_personalise_names_each_recipient_of_a_neutral_draft() -> None:
    body = "Hi there,\n\nYour exports fail. Hi there, again.\n\nMaya"
    assert drafting.personalise(body, "Ana") == "Hi Ana,\n\nYour exports fail. Hi there, again.\n\nMaya"
    assert drafting.personalise(body, "") == body
    assert drafting.personalise(body, "{first_name}") == body
    # Drafts stored before the neutral greeting still carry the merge field.
    assert drafting.personalise("Hi {first_name},\n\nText", "") == "Hi there,\n\nText"
    assert drafting.personalise("Hi {first_name},\n\nText", "Ben") == "Hi Ben,\n\nText"


# --- citations ----------------------------------------------------------------------------------


def test_each_document_is_cited_once_in_order() -> None:
    sources = [("Ticket", TICKET, "chunk 6"), ("Ticket", TICKET, "chunk 2"), ("FAQ", "https://f", "x"),
               ("Ticket", TICKET, "chunk 5")]
    assert drafting.citations(sources) == [("Ticket", TICKET), ("FAQ", "https://f")]
    message = drafting.compose("Text.", facts(sources=sources), recipient(), "template")
    assert f"More detail: Ticket ({TICKET}); FAQ (https://f)." in message.body


def test_without_a_fix_the_customer_is_not_pointed_at_passages() -> None:
    message = drafting.compose("Text.", facts(fix=""), recipient(), "template")
    assert "More detail" not in message.body and "short call" in message.body


def passage(doc: str, chunk: int, text: str, title: str = "") -> Passage:
    return Passage(doc, f"{doc}#{chunk}", title or doc, f"https://docs/{doc}", text, 1.0 - chunk / 10, "4.3")


def test_hits_of_one_document_become_one_passage_that_keeps_every_text() -> None:
    hits = [passage("ticket", 6, "The customer wrote in on Monday."), passage("ticket", 2, FIX_TEXT),
            passage("faq", 1, "Beacon is great."), passage("ticket", 5, "The customer wrote in on Monday.")]
    merged = one_per_document(hits)
    assert [(p.doc_id, p.chunk_id) for p in merged] == [("ticket", "ticket#6"), ("faq", "faq#1")]
    assert merged[0].text == f"The customer wrote in on Monday.\n\n{FIX_TEXT}"
    # The fix is found in the document's second hit.
    assert suggested_fix(merged, ["E-1042"]).startswith("To fix it, upgrade to @northwind/beacon-js 3.8.1")


# --- the fix ------------------------------------------------------------------------------------

ERROR_TABLE = """## HTTP errors

| HTTP | Code | Meaning | What to do |
|---|---|---|---|
| 401 | E-1001 | Missing or invalid API key | Check the `Authorization: Bearer` header |
| 401 | E-1002 | API key revoked or expired | Create a new key in Settings > Workspace > API Keys |
"""


def test_a_table_row_fix_reads_as_a_sentence() -> None:
    fix = suggested_fix([passage("codes", 1, ERROR_TABLE)], ["E-1002"])
    assert fix.startswith("401 E-1002 (API key revoked or expired): Create a new key in Settings > Workspace > "
                          "API Keys.")
    assert "|" not in fix


def test_a_sentence_that_describes_is_not_a_fix() -> None:
    describes = "SDKs queue events and send them to `POST /v2/events/batch`. Beacon retries for you."
    assert suggested_fix([passage("faq", 1, describes)], ["POST /v2/events/batch"]) == ""
    instructs = "If you cannot upgrade right away, set `batchSize: 500` in Beacon.init."
    assert suggested_fix([passage("faq", 1, instructs)], []) == instructs.replace("`", "")


# --- evidence for people ------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "shown"), [
    (0.003556517705272924, "0.36%"), (0.0005, "0.05%"), (0.0729, "7.3%"), (0.0149, "1.5%"), (0.0102, "1%"),
    (0.41062, "41%"), (1.0, "100%"), (0.0, "0%"), (0.000001, "<0.01%"),
])
def test_percentages_are_rounded_for_people(ratio: float, shown: str) -> None:
    assert percent_text(ratio) == shown


def test_evidence_values_are_rounded() -> None:
    item = EvidenceItem("s", "endpoint.error_rate:x", 0.003556517705272924, 0.41062801932367)
    assert (item.before, item.after) == (0.0036, 0.4106)


# --- the drafts a reviewer sees -------------------------------------------------------------------


@dataclass
class ChunkyRetrieval:
    """Retrieval as it really answers: several chunks of one document among the hits."""

    queries: list[str] = field(default_factory=list)

    async def Search(self, request: retrieval_pb2.SearchRequest) -> retrieval_pb2.SearchResponse:
        self.queries.append(request.query)
        ticket = {"doc_id": "ticket-e1042", "title": "E-1042 after 4.3", "url": TICKET, "version": "4.3"}
        return retrieval_pb2.SearchResponse(hits=[
            retrieval_pb2.SearchHit(chunk_id="ticket-e1042#6", text="We upgraded and it works.", score=0.9,
                                    similarity=0.8, **ticket),
            retrieval_pb2.SearchHit(chunk_id="ticket-e1042#2", text=FIX_TEXT, score=0.8, similarity=0.7, **ticket),
            retrieval_pb2.SearchHit(doc_id="codes", chunk_id="codes#1", title="Error codes", url="https://c",
                                    text=ERROR_TABLE, score=0.7, similarity=0.6),
            retrieval_pb2.SearchHit(chunk_id="ticket-e1042#5", text="Batches of 1,000 events.", score=0.6,
                                    similarity=0.6, **ticket),
        ])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OutreachStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'outreach.db'}")
    made = OutreachStore(engine)
    made.migrate()
    tenant, _ = build()
    # One contact without a first name: the greeting must still read well.
    made.upsert_accounts(contacts(**{"spiky": {"contact_name": ""}}), AS_OF)
    made.record_usage(tenant.events, AS_OF, late_after=dt.timedelta(days=1000))
    yield made
    engine.dispose()


PLACEHOLDER_REPLY = ("Hi {first_name}, calls to GET /v2/exports fail with HTTP 403 E-3001: upgrade to "
                     "@northwind/beacon-js 3.8.1, or add batchSize: 500 to your Beacon.init options.")


@pytest.mark.parametrize("llm", [FakeLlm(down=True), FakeLlm(PLACEHOLDER_REPLY)])
async def test_every_draft_reads_clean(store: OutreachStore, tmp_path: Path, llm: FakeLlm) -> None:
    made: OutreachServicer = servicer(store, tmp_path, ChunkyRetrieval(), llm)  # type: ignore[arg-type]
    made._clock = lambda: NOON  # type: ignore[method-assign]
    findings = (await detect(made)).findings
    assert {f.kind for f in findings} == {outreach_pb2.RISK_KIND_ACTIVITY_DROP, outreach_pb2.RISK_KIND_ERROR_SPIKE,
                                          outreach_pb2.RISK_KIND_RELEASE_CLUSTER, outreach_pb2.RISK_KIND_CHURN_TREND}
    drafts = []
    for finding in findings:
        doc_ids = [s.doc_id for s in finding.sources]
        assert doc_ids == list(dict.fromkeys(doc_ids)) == ["ticket-e1042", "codes"]
        for item in finding.evidence:
            assert not RAW_FLOAT.search(item.statement), item.statement
            assert (item.before, item.after) == (round(item.before, 4), round(item.after, 4))
        response = await made.DraftOutreach(  # type: ignore[arg-type]
            outreach_pb2.DraftOutreachRequest(tenant_id="demo", finding_id=finding.finding_id), None)
        drafts += response.drafts
    assert len(drafts) == 4
    for written in drafts:
        text = f"{written.subject}\n{written.body}"
        assert drafting.placeholders(text) == [], text
        assert not RAW_FLOAT.search(text), text
        assert written.body.count(TICKET) <= 1
        assert [s.doc_id for s in written.lineage.sources] == ["ticket-e1042", "codes"]
    by_account = {d.account_id: d for d in drafts}
    assert by_account["spiky"].body.startswith("Hi there,\n\n")  # no first name known
    assert by_account[""].body.startswith("Hi there,\n\n")  # several recipients
    assert by_account["dropper"].body.startswith("Hi Ana,\n\n")


async def test_comparisons_with_other_accounts_stay_with_the_reviewer(store: OutreachStore, tmp_path: Path) -> None:
    made: OutreachServicer = servicer(store, tmp_path, ChunkyRetrieval())  # type: ignore[arg-type]
    made._clock = lambda: NOON  # type: ignore[method-assign]
    findings = {f.kind: f for f in (await detect(made)).findings}
    churn, cluster = findings[outreach_pb2.RISK_KIND_CHURN_TREND], findings[outreach_pb2.RISK_KIND_RELEASE_CLUSTER]
    assert "churned" in churn.cause and "accounts" in cluster.cause
    for finding in (churn, cluster):
        (written,) = (await made.DraftOutreach(  # type: ignore[arg-type]
            outreach_pb2.DraftOutreachRequest(tenant_id="demo", finding_id=finding.finding_id), None)).drafts
        assert "churned" not in written.body and not re.search(r"\d+ accounts", written.body), written.body
