"""Bodies of the insights router (gateway/routes/insights.py): topic series and the confidence's
reliability, knowledge gaps, feedback exports.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from aftercare.escalation.v1 import escalation_pb2
from gateway.schemas.common import time_field

# --- insights and feedback (escalation) -------------------------------------


class TopicPoint(BaseModel):
    day: datetime | None
    contacts: int
    mean_confidence: float
    automation_rate: float
    escalation_rate: float
    edit_rate: float
    mean_csat: float = Field(description="Mean satisfaction (1-5) of the handoffs rated that day; 0 when none.")
    csat_ratings: int = Field(description="Handoffs rated that day.")


class TopicSeries(BaseModel):
    topic: str
    points: list[TopicPoint]
    confidence_drop_flagged: bool
    confidence_drop_detail: str = Field(description="Why the topic was flagged, in words; empty when not.")


class ReliabilityBin(BaseModel):
    lower: float = Field(description="Lower edge of the confidence interval (inclusive).")
    upper: float = Field(description="Upper edge (exclusive, except 1.0).")
    count: int = Field(description="Judged answers whose confidence fell in the interval.")
    mean_confidence: float
    accuracy: float = Field(description="Share of them judged right.")


class Reliability(BaseModel):
    """The confidence's reliability diagram: judged answers binned by confidence."""

    bins: list[ReliabilityBin] = Field(description="Ten bins of width 0.1, lowest first; empty bins have count 0.")
    judged: int = Field(description="Judged answers in all bins.")
    judged_by_agents: int = Field(description="Of those, judged by an agent's reply on a handoff.")
    judged_by_customers: int = Field(description="Of those, rated by the customer.")
    ece: float = Field(description="Expected calibration error: count-weighted mean |accuracy - mean_confidence|.")

    @classmethod
    def from_proto(cls, reliability: escalation_pb2.Reliability) -> Reliability:
        return cls(
            bins=[
                ReliabilityBin(
                    lower=b.lower, upper=b.upper, count=b.count, mean_confidence=b.mean_confidence, accuracy=b.accuracy
                )
                for b in reliability.bins
            ],
            judged=reliability.judged,
            judged_by_agents=reliability.judged_by_agents,
            judged_by_customers=reliability.judged_by_customers,
            ece=reliability.ece,
        )


class TopicInsightsReply(BaseModel):
    topics: list[TopicSeries]
    reliability: Reliability

    @classmethod
    def from_proto(cls, response: escalation_pb2.GetTopicInsightsResponse) -> TopicInsightsReply:
        return cls(
            reliability=Reliability.from_proto(response.reliability),
            topics=[
                TopicSeries(
                    topic=t.topic,
                    confidence_drop_flagged=t.confidence_drop_flagged,
                    confidence_drop_detail=t.confidence_drop_detail,
                    points=[
                        TopicPoint(
                            day=time_field(p, "day"),
                            contacts=p.contacts,
                            mean_confidence=p.mean_confidence,
                            automation_rate=p.automation_rate,
                            escalation_rate=p.escalation_rate,
                            edit_rate=p.edit_rate,
                            mean_csat=p.mean_csat,
                            csat_ratings=p.csat_ratings,
                        )
                        for p in t.points
                    ],
                )
                for t in response.topics
            ],
        )


class KnowledgeGap(BaseModel):
    gap_id: str
    suggested_title: str
    question_count: int
    examples: list[str]
    last_seen: datetime | None


class KnowledgeGapsReply(BaseModel):
    gaps: list[KnowledgeGap]

    @classmethod
    def from_proto(cls, response: escalation_pb2.ListKnowledgeGapsResponse) -> KnowledgeGapsReply:
        return cls(
            gaps=[
                KnowledgeGap(
                    gap_id=g.gap_id,
                    suggested_title=g.suggested_title,
                    question_count=g.question_count,
                    examples=list(g.examples),
                    last_seen=time_field(g, "last_seen"),
                )
                for g in response.gaps
            ]
        )


class FeedbackExportReply(BaseModel):
    record_count: int
    jsonl: str = Field(description='JSON Lines, one {"prompt","rejected","chosen"} object per line.')
    resume_since: datetime | None = Field(description="Set when the export stopped at its size limit: ask again "
                                          "with since set to this.")

    @classmethod
    def from_proto(cls, response: escalation_pb2.ExportFeedbackResponse) -> FeedbackExportReply:
        return cls(record_count=response.record_count, jsonl=response.jsonl,
                   resume_since=time_field(response, "resume_since"))


class IntentCorrectionsReply(BaseModel):
    example_count: int
    jsonl: str = Field(description='JSON Lines of {"text","label"}: what triage\'s Retrain and train CLI accept.')
