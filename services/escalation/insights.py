"""What support leads read: per-topic series over time, the reliability
diagram of the AI's confidence, and knowledge gaps.

Topics are intent labels. A contact is a handoff (escalated) or an outcome the
concierge reported with RecordOutcome (answered or clarified by the AI).
The reliability diagram bins judged answers (an agent's reply against the AI's
candidate, or a customer's rating) by the AI's confidence.
Knowledge gaps are the questions the knowledge base could not answer (escalated
for want of knowledge, or answered and judged wrong by the agent who took
over; a low confidence alone is no gap), clustered by meaning with
all-MiniLM-L6-v2 embeddings and ranked by volume weighted by recency.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import structlog

from aftercare.escalation.v1 import escalation_pb2
from servicekit import calibration
from servicekit.database import utcnow
from servicekit.pii import mask
from services.escalation.insights_store import (
    ContactRecord,
    CsatStat,
    GapQuestion,
    InsightsStore,
    JudgementRecord,
    ReplyStat,
)
from services.escalation.judgements import AGENT_JUDGEMENT, CUSTOMER_JUDGEMENT
from services.escalation.settings import EscalationSettings
from services.escalation.summaries import content_words, shorten

log = structlog.get_logger("services.escalation.insights")

UNCLASSIFIED = "unclassified"
EDITED_USES = ("DRAFT_USE_EDITED", "DRAFT_USE_REWRITTEN")
# A question counts half as much a week later: recent gaps outrank old ones of the same size.
RECENCY_HALF_LIFE_DAYS = 7.0
GAP_EXAMPLES = 3
MAX_TITLE_CHARS = 80

Embed = Callable[[list[str]], np.ndarray]


def _day(at: dt.datetime) -> dt.date:
    return at.astimezone(dt.UTC).date()


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def topic_series(
    contacts: Sequence[ContactRecord],
    replies: Sequence[ReplyStat],
    start: dt.datetime,
    end: dt.datetime,
    *,
    ratings: Sequence[CsatStat] = (),
    drop_threshold: float,
    baseline_days: int,
    min_contacts: int,
) -> list[escalation_pb2.TopicSeries]:
    """One series per topic, one point per UTC day from start to end. `contacts` may
    reach back before start: those days only serve as the baseline of the drop check."""
    by_topic: dict[str, dict[dt.date, list[ContactRecord]]] = defaultdict(lambda: defaultdict(list))
    for contact in contacts:
        by_topic[contact.intent or UNCLASSIFIED][_day(contact.at)].append(contact)
    replies_by_topic: dict[str, dict[dt.date, list[ReplyStat]]] = defaultdict(lambda: defaultdict(list))
    for reply in replies:
        replies_by_topic[reply.intent or UNCLASSIFIED][_day(reply.at)].append(reply)
    ratings_by_topic: dict[str, dict[dt.date, list[int]]] = defaultdict(lambda: defaultdict(list))
    for rated in ratings:
        ratings_by_topic[rated.intent or UNCLASSIFIED][_day(rated.at)].append(rated.rating)
    first_day, last_day = _day(start), _day(end - dt.timedelta(microseconds=1))
    days = [first_day + dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)]

    series = []
    for topic in sorted(set(by_topic) | set(replies_by_topic) | set(ratings_by_topic)):
        daily, daily_replies, daily_ratings = by_topic[topic], replies_by_topic[topic], ratings_by_topic[topic]
        if not any(daily.get(day) or daily_replies.get(day) or daily_ratings.get(day) for day in days):
            continue  # only baseline days before the window: not a topic of this period
        result = escalation_pb2.TopicSeries(topic=topic)
        for day in days:
            day_contacts = [c for c in daily.get(day, []) if start <= c.at < end]
            day_replies = [r for r in daily_replies.get(day, []) if start <= r.at < end]
            count = len(day_contacts)
            scored = [c.confidence for c in day_contacts if c.confidence is not None]
            day_ratings = daily_ratings.get(day, [])
            point = escalation_pb2.TopicPoint(
                contacts=count,
                mean_confidence=round(_mean(scored), 4),
                automation_rate=round(sum(c.kind == "answered" for c in day_contacts) / count, 4) if count else 0.0,
                escalation_rate=round(sum(c.kind == "escalated" for c in day_contacts) / count, 4) if count else 0.0,
                edit_rate=(
                    round(sum(r.draft_use in EDITED_USES for r in day_replies) / len(day_replies), 4)
                    if day_replies
                    else 0.0
                ),
                mean_csat=round(_mean(day_ratings), 4),
                csat_ratings=len(day_ratings),
            )
            point.day.FromDatetime(_midnight(day))
            result.points.append(point)
        flagged = _confidence_drop(daily, days, drop_threshold, baseline_days, min_contacts)
        if flagged:
            result.confidence_drop_flagged = True
            result.confidence_drop_detail = flagged
        series.append(result)
    return series


def _confidence_drop(
    daily: dict[dt.date, list[ContactRecord]],
    days: Sequence[dt.date],
    threshold: float,
    baseline_days: int,
    min_contacts: int,
) -> str:
    """Why the topic's confidence is flagged (the latest day it fell suddenly), or ""."""

    def scores(day: dt.date) -> list[float]:
        return [c.confidence for c in daily.get(day, []) if c.confidence is not None]

    for day in reversed(days):
        today = scores(day)
        if len(today) < min_contacts:
            continue
        before = [s for back in range(1, baseline_days + 1) for s in scores(day - dt.timedelta(days=back))]
        if len(before) < min_contacts:
            continue
        now_mean, base_mean = _mean(today), _mean(before)
        if base_mean - now_mean >= threshold:
            return (
                f"mean confidence {now_mean:.2f} on {day.isoformat()} over {len(today)} contacts, "
                f"{base_mean:.2f} over the {baseline_days} days before: did the product change "
                "without the knowledge base?"
            )
    return ""


def reliability(judgements: Sequence[JudgementRecord]) -> escalation_pb2.Reliability:
    """The reliability diagram of judged answers (servicekit.calibration: confidence bins
    [0, 0.1), ..., [0.9, 1.0], each bin's accuracy next to its mean confidence, and the ECE)."""
    diagram = calibration.reliability([j.confidence for j in judgements], [j.correct for j in judgements])
    result = escalation_pb2.Reliability(
        judged=len(judgements),
        judged_by_agents=sum(j.source == AGENT_JUDGEMENT for j in judgements),
        judged_by_customers=sum(j.source == CUSTOMER_JUDGEMENT for j in judgements),
    )
    for confidence_bin in diagram.bins:
        result.bins.append(
            escalation_pb2.ReliabilityBin(
                lower=confidence_bin.lower,
                upper=confidence_bin.upper,
                count=confidence_bin.count,
                mean_confidence=round(confidence_bin.mean_confidence, 4),
                accuracy=round(confidence_bin.accuracy, 4),
            )
        )
    result.ece = round(diagram.ece, 4)
    return result


# --- knowledge gaps -------------------------------------------------------------

_LEADING_NOISE = re.compile(r"^(?:(?:hi|hello|hey|please|pls|so|ok|okay|help)\b[\s,!.:-]*)+", re.IGNORECASE)
_TITLE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^how (?:do|can|could|should|would) (?:i|we|you|one) (?:go about )?(.+)$", re.I), "How to {}"),
    (re.compile(r"^(?:is it possible|is there a way) to (.+)$", re.I), "How to {}"),
    (re.compile(r"^(?:can|could|may) (?:i|we) (.+)$", re.I), "How to {}"),
    (re.compile(r"^(?:i|we) (?:want|need|would like) to (.+)$", re.I), "How to {}"),
    (re.compile(r"^where (?:do|can) (?:i|we) (.+)$", re.I), "Where to {}"),
    (
        re.compile(r"^(?:i|we) (?:can't|cannot|can not|am unable to|are unable to|couldn't) (.+)$", re.I),
        "Troubleshooting: can't {}",
    ),
    (re.compile(r"^(why \w+ .+)$", re.I), "{}"),
    (re.compile(r"^what (?:is|are) (?:the |a |an )?(.+)$", re.I), "What is {}"),
]


def suggest_title(question: str, keywords: Sequence[str]) -> str:
    """A help-centre title from the cluster's most typical question, or its keywords."""
    text = _LEADING_NOISE.sub("", " ".join(question.split())).strip()
    text = re.split(r"(?<=[?.!])\s", text)[0].rstrip("?.! ")
    text = re.sub(r"\b(my|our)\b", "your", text, flags=re.I)
    for pattern, template in _TITLE_PATTERNS:
        match = pattern.match(text)
        if match and len(match.group(1)) >= 3:
            title = template.format(match.group(1))
            return shorten(title[0].upper() + title[1:], MAX_TITLE_CHARS)
    if keywords:
        return shorten("Questions about " + ", ".join(keywords[:3]), MAX_TITLE_CHARS)
    return shorten(text[:1].upper() + text[1:], MAX_TITLE_CHARS)


def _keywords(texts: Sequence[str], everything: Counter[str]) -> list[str]:
    """Words frequent in the cluster and rarer elsewhere."""
    inside = Counter(word for text in texts for word in content_words(text) if not word.isdigit())
    total = max(1, sum(everything.values()))
    scored = {word: count * np.log(1 + total / everything[word]) for word, count in inside.items() if count >= 2}
    return [word for word, _ in sorted(scored.items(), key=lambda item: (-item[1], item[0]))]


def cluster(vectors: np.ndarray, distance: float) -> np.ndarray:
    """Cluster labels: average-linkage clusters whose members are within `distance` (cosine) on average."""
    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average")
    return np.asarray(model.fit_predict(vectors))


def knowledge_gaps(
    questions: Sequence[GapQuestion], embed: Embed, limit: int, distance: float, now: dt.datetime
) -> list[escalation_pb2.KnowledgeGap]:
    if not questions:
        return []
    # Masked before anything else: gap examples are shown to leads and exported.
    texts = [mask(" ".join(q.text.split())) for q in questions]
    vectors = embed(texts)
    labels = cluster(vectors, distance)
    everything = Counter(word for text in texts for word in content_words(text))
    gaps: list[tuple[float, escalation_pb2.KnowledgeGap]] = []
    for label in set(labels.tolist()):
        members = [i for i in range(len(texts)) if labels[i] == label]
        centroid = vectors[members].mean(axis=0)
        by_typicality = sorted(members, key=lambda i: -float(vectors[i] @ centroid))
        examples: list[str] = []
        seen: set[str] = set()
        for i in by_typicality:
            key = " ".join(re.findall(r"\w+", texts[i].lower()))
            if key not in seen:  # near-duplicates (case, punctuation) are shown once
                seen.add(key)
                examples.append(shorten(texts[i], 200))
            if len(examples) == GAP_EXAMPLES:
                break
        weight = sum(
            0.5 ** (max(0.0, (now - questions[i].at).total_seconds()) / 86_400 / RECENCY_HALF_LIFE_DAYS)
            for i in members
        )
        medoid = texts[by_typicality[0]]
        gap = escalation_pb2.KnowledgeGap(
            # Stable across calls while the cluster's most typical question stays the same.
            gap_id=hashlib.sha256(medoid.lower().encode()).hexdigest()[:12],
            suggested_title=suggest_title(medoid, _keywords([texts[i] for i in members], everything)),
            question_count=len(members),
            examples=examples,
        )
        gap.last_seen.FromDatetime(max(questions[i].at for i in members))
        gaps.append((weight, gap))
    gaps.sort(key=lambda item: (-item[0], -item[1].question_count, item[1].gap_id))
    return [gap for _, gap in gaps[:limit]]


class InsightsEngine:
    """Reads the store and computes; the embedding model is loaded on first use."""

    def __init__(self, settings: EscalationSettings, store: InsightsStore, embed: Embed | None = None) -> None:
        self._settings = settings
        self._store = store
        self._embed = embed
        self._lock = threading.Lock()

    def _embedder(self) -> Embed:
        with self._lock:
            if self._embed is None:
                # all-MiniLM-L6-v2 (from its PyPI package), as triage and retrieval use it.
                from servicekit.embeddings import SentenceEncoder

                self._embed = SentenceEncoder(torch_threads=self._settings.torch_threads).encode
            return self._embed

    def topic_insights(
        self, tenant_id: str, start: dt.datetime, end: dt.datetime
    ) -> escalation_pb2.GetTopicInsightsResponse:
        baseline_start = start - dt.timedelta(days=self._settings.drop_baseline_days)
        # One read: the baseline days serve the drop check only; judgements are the period's.
        data = self._store.insight_data(tenant_id, baseline_start, end, judged_from=start)
        topics = topic_series(
            data.contacts,
            data.replies,
            start,
            end,
            ratings=data.ratings,
            drop_threshold=self._settings.drop_threshold,
            baseline_days=self._settings.drop_baseline_days,
            min_contacts=self._settings.drop_min_contacts,
        )
        return escalation_pb2.GetTopicInsightsResponse(topics=topics, reliability=reliability(data.judgements))

    def knowledge_gaps(self, tenant_id: str, limit: int) -> list[escalation_pb2.KnowledgeGap]:
        now = utcnow()
        questions = self._store.gap_questions(
            tenant_id, now - dt.timedelta(days=self._settings.gap_window_days), self._settings.gap_max_questions
        )
        if not questions:
            return []
        return knowledge_gaps(questions, self._embedder(), limit, self._settings.gap_distance, now)
