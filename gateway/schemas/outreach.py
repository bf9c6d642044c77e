"""Bodies of the outreach router (gateway/routes/outreach.py): usage events, risk findings,
outreach drafts and their review, accounts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from aftercare.outreach.v1 import outreach_pb2
from gateway.schemas.common import Citation, IsoDateTime, RequestBody, enum_name, time_field, to_timestamp

# --- usage events and outreach ---------------------------------------------


class UsageEventIn(RequestBody):
    event_id: str = Field(min_length=1, max_length=128, description="Unique id; a repeat is counted once.")
    account_id: str = Field(min_length=1, max_length=256)
    occurred_at: IsoDateTime
    feature: str = Field(default="", max_length=128)
    endpoint: str = Field(default="", max_length=256)
    status_code: StrictInt = Field(default=0, ge=0, le=999)
    error_code: str = Field(default="", max_length=64)
    count: StrictInt = Field(default=1, ge=1, le=1_000_000)
    client_version: str = Field(default="", max_length=64)

    def to_proto(self, tenant_id: str) -> outreach_pb2.UsageEvent:
        return outreach_pb2.UsageEvent(
            event_id=self.event_id,
            tenant_id=tenant_id,
            account_id=self.account_id,
            occurred_at=to_timestamp(self.occurred_at),
            feature=self.feature,
            endpoint=self.endpoint,
            status_code=self.status_code,
            error_code=self.error_code,
            count=self.count,
            client_version=self.client_version,
        )


class UsageEventsRequest(RequestBody):
    events: list[UsageEventIn] = Field(min_length=1, max_length=1000)


class RejectedEvent(BaseModel):
    event_id: str
    reason: str


class UsageEventsReply(BaseModel):
    accepted: int
    duplicates: int
    late: int = Field(description="Accepted events whose day was already closed; they amend its aggregates.")
    rejected: list[RejectedEvent]

    @classmethod
    def from_proto(cls, response: outreach_pb2.RecordUsageResponse) -> UsageEventsReply:
        return cls(
            accepted=response.accepted,
            duplicates=response.duplicates,
            late=response.late,
            rejected=[RejectedEvent(event_id=r.event_id, reason=r.reason) for r in response.rejected],
        )


class Evidence(BaseModel):
    statement: str
    metric: str
    before: float
    after: float


def _evidence(items: Any) -> list[Evidence]:
    return [Evidence(statement=e.statement, metric=e.metric, before=e.before, after=e.after) for e in items]


class RiskFinding(BaseModel):
    finding_id: str
    account_ids: list[str]
    kind: Literal["unspecified", "activity_drop", "error_spike", "release_cluster", "churn_trend"]
    feature: str
    endpoint: str
    error_code: str
    release: str
    evidence: list[Evidence]
    detected_at: datetime | None
    cause: str = Field(description="One-line analysed cause.")
    severity: float = Field(description="In [0, 1]; findings come most severe first.")
    suggested_fix: str = Field(description="Fix or next step from the best knowledge-base passage; may be empty.")
    sources: list[Citation] = Field(description="Passages that explain or fix it.")
    knowledge_unavailable: bool

    @classmethod
    def from_proto(cls, finding: outreach_pb2.RiskFinding) -> RiskFinding:
        return cls(
            finding_id=finding.finding_id,
            account_ids=list(finding.account_ids),
            kind=enum_name(outreach_pb2.RiskKind, finding.kind),
            feature=finding.feature,
            endpoint=finding.endpoint,
            error_code=finding.error_code,
            release=finding.release,
            evidence=_evidence(finding.evidence),
            detected_at=time_field(finding, "detected_at"),
            cause=finding.cause,
            severity=finding.severity,
            suggested_fix=finding.suggested_fix,
            sources=[Citation.from_proto(c) for c in finding.sources],
            knowledge_unavailable=finding.knowledge_unavailable,
        )


class DetectRisksRequest(RequestBody):
    as_of: IsoDateTime | None = Field(default=None, description="Evaluate as of this time; now when omitted.")


class DetectRisksReply(BaseModel):
    findings: list[RiskFinding]


DraftStateName = Literal["pending_review", "approved", "rejected", "sent"]


class OutreachDraft(BaseModel):
    draft_id: str
    account_id: str = Field(description="The one account it goes to; empty for a draft to several (recipients).")
    recipient_account_ids: list[str] = Field(
        description="Every account it goes to: account_id alone, or the accounts of a cross-customer incident."
    )
    finding_id: str
    subject: str
    body: str
    state: Literal["unspecified", "pending_review", "approved", "rejected", "sent"]
    created_at: datetime | None
    generator: str = Field(description="'llm' or 'template' (the deterministic fallback).")
    reviewer_id: str | None
    original_body: str = Field(description="Body as first drafted, before a reviewer's edit.")
    sources: list[Citation] = Field(description="Passages the text is grounded in (its lineage).")

    @classmethod
    def from_proto(cls, draft: outreach_pb2.OutreachDraft) -> OutreachDraft:
        return cls(
            draft_id=draft.draft_id,
            account_id=draft.account_id,
            recipient_account_ids=list(draft.recipient_account_ids) or ([draft.account_id] if draft.account_id else []),
            finding_id=draft.finding_id,
            subject=draft.subject,
            body=draft.body,
            state=enum_name(outreach_pb2.DraftState, draft.state),
            created_at=time_field(draft, "created_at"),
            generator=draft.generator,
            reviewer_id=draft.reviewer_id or None,
            original_body=draft.original_body,
            sources=[Citation.from_proto(c) for c in draft.lineage.sources],
        )


class SkippedAccount(BaseModel):
    account_id: str
    reason: str = Field(description="'opted_out', 'frequency_cap', 'churned' or 'no_contact'.")


class DraftsReply(BaseModel):
    drafts: list[OutreachDraft]
    skipped: list[SkippedAccount] = Field(default_factory=list, description="Affected accounts that got no draft.")


class ReviewDraftRequest(RequestBody):
    action: Literal["approve", "edit", "reject"]
    edited_body: str | None = Field(default=None, min_length=1, max_length=20_000, description="For action edit.")


class AccountIn(RequestBody):
    account_id: str = Field(min_length=1, max_length=256, description="As in usage events.")
    name: str = Field(default="", max_length=256)
    contact_name: str = Field(default="", max_length=128, description="First name messages are addressed to.")
    contact_email: str = Field(default="", max_length=320)
    csm_name: str = Field(default="", max_length=128)
    csm_email: str = Field(default="", max_length=320)
    timezone: str = Field(default="", max_length=64, description="IANA time zone, for quiet hours; UTC when empty.")
    opted_out: StrictBool = False
    churned_at: IsoDateTime | None = None

    def to_proto(self, tenant_id: str) -> outreach_pb2.Account:
        return outreach_pb2.Account(
            tenant_id=tenant_id,
            account_id=self.account_id,
            name=self.name,
            contact_name=self.contact_name,
            contact_email=self.contact_email,
            csm_name=self.csm_name,
            csm_email=self.csm_email,
            timezone=self.timezone,
            opted_out=self.opted_out,
            churned_at=to_timestamp(self.churned_at),
        )


class UpsertAccountsRequest(RequestBody):
    accounts: list[AccountIn] = Field(min_length=1, max_length=1000)


class UpsertAccountsReply(BaseModel):
    created: int
    updated: int
