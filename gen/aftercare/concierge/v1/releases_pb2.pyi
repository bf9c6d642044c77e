import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReleaseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_STATE_UNSPECIFIED: _ClassVar[ReleaseState]
    RELEASE_STATE_CANDIDATE: _ClassVar[ReleaseState]
    RELEASE_STATE_LIVE: _ClassVar[ReleaseState]
    RELEASE_STATE_RETIRED: _ClassVar[ReleaseState]

class ReleaseEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_EVENT_KIND_UNSPECIFIED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_CREATED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_PROMOTED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_PROMOTED_WITH_OVERRIDE: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_ROLLED_BACK: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_SUITE_RECORDED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_SHADOW_STARTED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_SHADOW_STOPPED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_CANARY_STARTED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_CANARY_STOPPED: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_CANARY_ROLLED_BACK: _ClassVar[ReleaseEventKind]
    RELEASE_EVENT_KIND_REFITTED: _ClassVar[ReleaseEventKind]

class CanaryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANARY_STATE_UNSPECIFIED: _ClassVar[CanaryState]
    CANARY_STATE_RUNNING: _ClassVar[CanaryState]
    CANARY_STATE_STOPPED: _ClassVar[CanaryState]
    CANARY_STATE_ROLLED_BACK: _ClassVar[CanaryState]
    CANARY_STATE_PROMOTED: _ClassVar[CanaryState]
RELEASE_STATE_UNSPECIFIED: ReleaseState
RELEASE_STATE_CANDIDATE: ReleaseState
RELEASE_STATE_LIVE: ReleaseState
RELEASE_STATE_RETIRED: ReleaseState
RELEASE_EVENT_KIND_UNSPECIFIED: ReleaseEventKind
RELEASE_EVENT_KIND_CREATED: ReleaseEventKind
RELEASE_EVENT_KIND_PROMOTED: ReleaseEventKind
RELEASE_EVENT_KIND_PROMOTED_WITH_OVERRIDE: ReleaseEventKind
RELEASE_EVENT_KIND_ROLLED_BACK: ReleaseEventKind
RELEASE_EVENT_KIND_SUITE_RECORDED: ReleaseEventKind
RELEASE_EVENT_KIND_SHADOW_STARTED: ReleaseEventKind
RELEASE_EVENT_KIND_SHADOW_STOPPED: ReleaseEventKind
RELEASE_EVENT_KIND_CANARY_STARTED: ReleaseEventKind
RELEASE_EVENT_KIND_CANARY_STOPPED: ReleaseEventKind
RELEASE_EVENT_KIND_CANARY_ROLLED_BACK: ReleaseEventKind
RELEASE_EVENT_KIND_REFITTED: ReleaseEventKind
CANARY_STATE_UNSPECIFIED: CanaryState
CANARY_STATE_RUNNING: CanaryState
CANARY_STATE_STOPPED: CanaryState
CANARY_STATE_ROLLED_BACK: CanaryState
CANARY_STATE_PROMOTED: CanaryState

class ReleaseComponents(_message.Message):
    __slots__ = ("llm_model", "prompt_version", "confidence_fit_version", "thresholds", "triage_model_version", "routing_policy_version", "persona_version", "action_catalog_version")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LLM_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    TRIAGE_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTING_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONA_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    llm_model: str
    prompt_version: str
    confidence_fit_version: str
    thresholds: _containers.ScalarMap[str, float]
    triage_model_version: str
    routing_policy_version: str
    persona_version: str
    action_catalog_version: str
    def __init__(self, llm_model: _Optional[str] = ..., prompt_version: _Optional[str] = ..., confidence_fit_version: _Optional[str] = ..., thresholds: _Optional[_Mapping[str, float]] = ..., triage_model_version: _Optional[str] = ..., routing_policy_version: _Optional[str] = ..., persona_version: _Optional[str] = ..., action_catalog_version: _Optional[str] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("tenant_id", "release_id", "number", "state", "components", "description", "created_by", "created_at", "promoted_at", "digest", "latest_suite_run")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_AT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LATEST_SUITE_RUN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    release_id: str
    number: int
    state: ReleaseState
    components: ReleaseComponents
    description: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    promoted_at: _timestamp_pb2.Timestamp
    digest: str
    latest_suite_run: SuiteRun
    def __init__(self, tenant_id: _Optional[str] = ..., release_id: _Optional[str] = ..., number: _Optional[int] = ..., state: _Optional[_Union[ReleaseState, str]] = ..., components: _Optional[_Union[ReleaseComponents, _Mapping]] = ..., description: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., promoted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., digest: _Optional[str] = ..., latest_suite_run: _Optional[_Union[SuiteRun, _Mapping]] = ...) -> None: ...

class ReleaseOverrides(_message.Message):
    __slots__ = ("thresholds", "llm_model", "prompt_version")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LLM_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    thresholds: _containers.ScalarMap[str, float]
    llm_model: str
    prompt_version: str
    def __init__(self, thresholds: _Optional[_Mapping[str, float]] = ..., llm_model: _Optional[str] = ..., prompt_version: _Optional[str] = ...) -> None: ...

class CreateReleaseRequest(_message.Message):
    __slots__ = ("tenant_id", "description", "created_by", "request_id", "overrides")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    description: str
    created_by: str
    request_id: str
    overrides: ReleaseOverrides
    def __init__(self, tenant_id: _Optional[str] = ..., description: _Optional[str] = ..., created_by: _Optional[str] = ..., request_id: _Optional[str] = ..., overrides: _Optional[_Union[ReleaseOverrides, _Mapping]] = ...) -> None: ...

class CreateReleaseResponse(_message.Message):
    __slots__ = ("release",)
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    release: Release
    def __init__(self, release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class GetReleaseRequest(_message.Message):
    __slots__ = ("tenant_id", "release_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    release_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., release_id: _Optional[str] = ...) -> None: ...

class GetReleaseResponse(_message.Message):
    __slots__ = ("release",)
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    release: Release
    def __init__(self, release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class ListReleasesRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReleasesResponse(_message.Message):
    __slots__ = ("releases", "next_page_token")
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    next_page_token: str
    def __init__(self, releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CompareReleasesRequest(_message.Message):
    __slots__ = ("tenant_id", "base_release_id", "other_release_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    base_release_id: str
    other_release_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., base_release_id: _Optional[str] = ..., other_release_id: _Optional[str] = ...) -> None: ...

class ComponentChange(_message.Message):
    __slots__ = ("component", "base", "other")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    component: str
    base: str
    other: str
    def __init__(self, component: _Optional[str] = ..., base: _Optional[str] = ..., other: _Optional[str] = ...) -> None: ...

class CompareReleasesResponse(_message.Message):
    __slots__ = ("base", "other", "changes")
    BASE_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    base: Release
    other: Release
    changes: _containers.RepeatedCompositeFieldContainer[ComponentChange]
    def __init__(self, base: _Optional[_Union[Release, _Mapping]] = ..., other: _Optional[_Union[Release, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[ComponentChange, _Mapping]]] = ...) -> None: ...

class ScenarioResult(_message.Message):
    __slots__ = ("name", "passed", "failures")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    passed: bool
    failures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., passed: _Optional[bool] = ..., failures: _Optional[_Iterable[str]] = ...) -> None: ...

class SuiteRun(_message.Message):
    __slots__ = ("run_id", "release_id", "suite_digest", "total", "passed", "results", "started_at", "finished_at", "run_by", "partial")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_BY_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    release_id: str
    suite_digest: str
    total: int
    passed: int
    results: _containers.RepeatedCompositeFieldContainer[ScenarioResult]
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    run_by: str
    partial: bool
    def __init__(self, run_id: _Optional[str] = ..., release_id: _Optional[str] = ..., suite_digest: _Optional[str] = ..., total: _Optional[int] = ..., passed: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ScenarioResult, _Mapping]]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_by: _Optional[str] = ..., partial: _Optional[bool] = ...) -> None: ...

class RecordSuiteRunRequest(_message.Message):
    __slots__ = ("tenant_id", "run")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    run: SuiteRun
    def __init__(self, tenant_id: _Optional[str] = ..., run: _Optional[_Union[SuiteRun, _Mapping]] = ...) -> None: ...

class RecordSuiteRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: SuiteRun
    def __init__(self, run: _Optional[_Union[SuiteRun, _Mapping]] = ...) -> None: ...

class PromoteReleaseRequest(_message.Message):
    __slots__ = ("tenant_id", "release_id", "actor", "override_reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    release_id: str
    actor: str
    override_reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., release_id: _Optional[str] = ..., actor: _Optional[str] = ..., override_reason: _Optional[str] = ...) -> None: ...

class PromoteReleaseResponse(_message.Message):
    __slots__ = ("release", "event")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    release: Release
    event: ReleaseEvent
    def __init__(self, release: _Optional[_Union[Release, _Mapping]] = ..., event: _Optional[_Union[ReleaseEvent, _Mapping]] = ...) -> None: ...

class RollbackReleaseRequest(_message.Message):
    __slots__ = ("tenant_id", "to_release_id", "actor", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    to_release_id: str
    actor: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., to_release_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackReleaseResponse(_message.Message):
    __slots__ = ("release", "event")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    release: Release
    event: ReleaseEvent
    def __init__(self, release: _Optional[_Union[Release, _Mapping]] = ..., event: _Optional[_Union[ReleaseEvent, _Mapping]] = ...) -> None: ...

class ReleaseEvent(_message.Message):
    __slots__ = ("sequence", "tenant_id", "kind", "release_id", "previous_release_id", "actor", "detail", "occurred_at")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    tenant_id: str
    kind: ReleaseEventKind
    release_id: str
    previous_release_id: str
    actor: str
    detail: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., tenant_id: _Optional[str] = ..., kind: _Optional[_Union[ReleaseEventKind, str]] = ..., release_id: _Optional[str] = ..., previous_release_id: _Optional[str] = ..., actor: _Optional[str] = ..., detail: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReleaseEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReleaseEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ReleaseEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[ReleaseEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Shadow(_message.Message):
    __slots__ = ("tenant_id", "shadow_id", "release_id", "live_release_id", "sample_rate", "active", "started_by", "started_at", "stopped_at", "shadowed_turns", "skipped_turns")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SHADOW_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LIVE_RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_AT_FIELD_NUMBER: _ClassVar[int]
    SHADOWED_TURNS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_TURNS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    shadow_id: str
    release_id: str
    live_release_id: str
    sample_rate: float
    active: bool
    started_by: str
    started_at: _timestamp_pb2.Timestamp
    stopped_at: _timestamp_pb2.Timestamp
    shadowed_turns: int
    skipped_turns: int
    def __init__(self, tenant_id: _Optional[str] = ..., shadow_id: _Optional[str] = ..., release_id: _Optional[str] = ..., live_release_id: _Optional[str] = ..., sample_rate: _Optional[float] = ..., active: _Optional[bool] = ..., started_by: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stopped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., shadowed_turns: _Optional[int] = ..., skipped_turns: _Optional[int] = ...) -> None: ...

class StartShadowRequest(_message.Message):
    __slots__ = ("tenant_id", "release_id", "sample_rate", "actor")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    release_id: str
    sample_rate: float
    actor: str
    def __init__(self, tenant_id: _Optional[str] = ..., release_id: _Optional[str] = ..., sample_rate: _Optional[float] = ..., actor: _Optional[str] = ...) -> None: ...

class StartShadowResponse(_message.Message):
    __slots__ = ("shadow", "event")
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    event: ReleaseEvent
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ..., event: _Optional[_Union[ReleaseEvent, _Mapping]] = ...) -> None: ...

class StopShadowRequest(_message.Message):
    __slots__ = ("tenant_id", "actor")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    actor: str
    def __init__(self, tenant_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class StopShadowResponse(_message.Message):
    __slots__ = ("shadow",)
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ...) -> None: ...

class GetShadowReportRequest(_message.Message):
    __slots__ = ("tenant_id", "shadow_id", "max_disagreements")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SHADOW_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    shadow_id: str
    max_disagreements: int
    def __init__(self, tenant_id: _Optional[str] = ..., shadow_id: _Optional[str] = ..., max_disagreements: _Optional[int] = ...) -> None: ...

class ArmFigures(_message.Message):
    __slots__ = ("release_id", "turns", "answered", "answered_rate", "human_judged", "agreed", "agreement", "answered_judged", "answered_correct", "judged_accuracy", "intent_labelled", "intent_agreed")
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_RATE_FIELD_NUMBER: _ClassVar[int]
    HUMAN_JUDGED_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_JUDGED_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_CORRECT_FIELD_NUMBER: _ClassVar[int]
    JUDGED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    INTENT_LABELLED_FIELD_NUMBER: _ClassVar[int]
    INTENT_AGREED_FIELD_NUMBER: _ClassVar[int]
    release_id: str
    turns: int
    answered: int
    answered_rate: float
    human_judged: int
    agreed: int
    agreement: float
    answered_judged: int
    answered_correct: int
    judged_accuracy: float
    intent_labelled: int
    intent_agreed: int
    def __init__(self, release_id: _Optional[str] = ..., turns: _Optional[int] = ..., answered: _Optional[int] = ..., answered_rate: _Optional[float] = ..., human_judged: _Optional[int] = ..., agreed: _Optional[int] = ..., agreement: _Optional[float] = ..., answered_judged: _Optional[int] = ..., answered_correct: _Optional[int] = ..., judged_accuracy: _Optional[float] = ..., intent_labelled: _Optional[int] = ..., intent_agreed: _Optional[int] = ...) -> None: ...

class TopicComparison(_message.Message):
    __slots__ = ("topic", "live", "candidate")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    live: ArmFigures
    candidate: ArmFigures
    def __init__(self, topic: _Optional[str] = ..., live: _Optional[_Union[ArmFigures, _Mapping]] = ..., candidate: _Optional[_Union[ArmFigures, _Mapping]] = ...) -> None: ...

class ShadowDisagreement(_message.Message):
    __slots__ = ("conversation_id", "turn_index", "topic", "customer_text", "live_decision", "live_reason", "live_confidence", "candidate_decision", "candidate_reason", "candidate_confidence", "human_verdict", "candidate_reply")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_TEXT_FIELD_NUMBER: _ClassVar[int]
    LIVE_DECISION_FIELD_NUMBER: _ClassVar[int]
    LIVE_REASON_FIELD_NUMBER: _ClassVar[int]
    LIVE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_DECISION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REASON_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    HUMAN_VERDICT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REPLY_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turn_index: int
    topic: str
    customer_text: str
    live_decision: str
    live_reason: str
    live_confidence: float
    candidate_decision: str
    candidate_reason: str
    candidate_confidence: float
    human_verdict: str
    candidate_reply: str
    def __init__(self, conversation_id: _Optional[str] = ..., turn_index: _Optional[int] = ..., topic: _Optional[str] = ..., customer_text: _Optional[str] = ..., live_decision: _Optional[str] = ..., live_reason: _Optional[str] = ..., live_confidence: _Optional[float] = ..., candidate_decision: _Optional[str] = ..., candidate_reason: _Optional[str] = ..., candidate_confidence: _Optional[float] = ..., human_verdict: _Optional[str] = ..., candidate_reply: _Optional[str] = ...) -> None: ...

class GetShadowReportResponse(_message.Message):
    __slots__ = ("shadow", "live", "candidate", "topics", "disagreements", "method")
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    live: ArmFigures
    candidate: ArmFigures
    topics: _containers.RepeatedCompositeFieldContainer[TopicComparison]
    disagreements: _containers.RepeatedCompositeFieldContainer[ShadowDisagreement]
    method: str
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ..., live: _Optional[_Union[ArmFigures, _Mapping]] = ..., candidate: _Optional[_Union[ArmFigures, _Mapping]] = ..., topics: _Optional[_Iterable[_Union[TopicComparison, _Mapping]]] = ..., disagreements: _Optional[_Iterable[_Union[ShadowDisagreement, _Mapping]]] = ..., method: _Optional[str] = ...) -> None: ...

class CanaryPolicy(_message.Message):
    __slots__ = ("accuracy_margin", "escalation_margin", "min_judged", "min_turns", "confidence")
    ACCURACY_MARGIN_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_MARGIN_FIELD_NUMBER: _ClassVar[int]
    MIN_JUDGED_FIELD_NUMBER: _ClassVar[int]
    MIN_TURNS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    accuracy_margin: float
    escalation_margin: float
    min_judged: int
    min_turns: int
    confidence: float
    def __init__(self, accuracy_margin: _Optional[float] = ..., escalation_margin: _Optional[float] = ..., min_judged: _Optional[int] = ..., min_turns: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class CanaryArm(_message.Message):
    __slots__ = ("release_id", "turns", "escalated", "escalation_rate", "judged", "judged_correct", "judged_accuracy", "rated", "rated_helpful")
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    ESCALATED_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_RATE_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    JUDGED_CORRECT_FIELD_NUMBER: _ClassVar[int]
    JUDGED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    RATED_FIELD_NUMBER: _ClassVar[int]
    RATED_HELPFUL_FIELD_NUMBER: _ClassVar[int]
    release_id: str
    turns: int
    escalated: int
    escalation_rate: float
    judged: int
    judged_correct: int
    judged_accuracy: float
    rated: int
    rated_helpful: int
    def __init__(self, release_id: _Optional[str] = ..., turns: _Optional[int] = ..., escalated: _Optional[int] = ..., escalation_rate: _Optional[float] = ..., judged: _Optional[int] = ..., judged_correct: _Optional[int] = ..., judged_accuracy: _Optional[float] = ..., rated: _Optional[int] = ..., rated_helpful: _Optional[int] = ...) -> None: ...

class Canary(_message.Message):
    __slots__ = ("tenant_id", "canary_id", "release_id", "live_release_id", "percent", "state", "policy", "started_by", "started_at", "ended_at", "end_reason", "canary", "live", "verdict", "evaluated_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CANARY_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LIVE_RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    canary_id: str
    release_id: str
    live_release_id: str
    percent: int
    state: CanaryState
    policy: CanaryPolicy
    started_by: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    end_reason: str
    canary: CanaryArm
    live: CanaryArm
    verdict: str
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., canary_id: _Optional[str] = ..., release_id: _Optional[str] = ..., live_release_id: _Optional[str] = ..., percent: _Optional[int] = ..., state: _Optional[_Union[CanaryState, str]] = ..., policy: _Optional[_Union[CanaryPolicy, _Mapping]] = ..., started_by: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ..., canary: _Optional[_Union[CanaryArm, _Mapping]] = ..., live: _Optional[_Union[CanaryArm, _Mapping]] = ..., verdict: _Optional[str] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartCanaryRequest(_message.Message):
    __slots__ = ("tenant_id", "release_id", "percent", "policy", "actor", "override_reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    release_id: str
    percent: int
    policy: CanaryPolicy
    actor: str
    override_reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., release_id: _Optional[str] = ..., percent: _Optional[int] = ..., policy: _Optional[_Union[CanaryPolicy, _Mapping]] = ..., actor: _Optional[str] = ..., override_reason: _Optional[str] = ...) -> None: ...

class StartCanaryResponse(_message.Message):
    __slots__ = ("canary", "event")
    CANARY_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    canary: Canary
    event: ReleaseEvent
    def __init__(self, canary: _Optional[_Union[Canary, _Mapping]] = ..., event: _Optional[_Union[ReleaseEvent, _Mapping]] = ...) -> None: ...

class StopCanaryRequest(_message.Message):
    __slots__ = ("tenant_id", "actor", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    actor: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StopCanaryResponse(_message.Message):
    __slots__ = ("canary",)
    CANARY_FIELD_NUMBER: _ClassVar[int]
    canary: Canary
    def __init__(self, canary: _Optional[_Union[Canary, _Mapping]] = ...) -> None: ...

class GetCanaryRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetCanaryResponse(_message.Message):
    __slots__ = ("canary",)
    CANARY_FIELD_NUMBER: _ClassVar[int]
    canary: Canary
    def __init__(self, canary: _Optional[_Union[Canary, _Mapping]] = ...) -> None: ...

class RefitConfidenceRequest(_message.Message):
    __slots__ = ("tenant_id", "actor", "request_id", "target_accuracy")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    actor: str
    request_id: str
    target_accuracy: float
    def __init__(self, tenant_id: _Optional[str] = ..., actor: _Optional[str] = ..., request_id: _Optional[str] = ..., target_accuracy: _Optional[float] = ...) -> None: ...

class TopicFit(_message.Message):
    __slots__ = ("topic", "examples", "threshold", "coverage", "accuracy")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    topic: str
    examples: int
    threshold: float
    coverage: float
    accuracy: float
    def __init__(self, topic: _Optional[str] = ..., examples: _Optional[int] = ..., threshold: _Optional[float] = ..., coverage: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class FitValidation(_message.Message):
    __slots__ = ("examples", "correct", "folds", "live_ece", "refit_ece", "threshold", "live_coverage", "refit_coverage", "live_accuracy", "refit_accuracy", "topics")
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    LIVE_ECE_FIELD_NUMBER: _ClassVar[int]
    REFIT_ECE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LIVE_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    REFIT_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    LIVE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    REFIT_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    examples: int
    correct: int
    folds: int
    live_ece: float
    refit_ece: float
    threshold: float
    live_coverage: float
    refit_coverage: float
    live_accuracy: float
    refit_accuracy: float
    topics: _containers.RepeatedCompositeFieldContainer[TopicFit]
    def __init__(self, examples: _Optional[int] = ..., correct: _Optional[int] = ..., folds: _Optional[int] = ..., live_ece: _Optional[float] = ..., refit_ece: _Optional[float] = ..., threshold: _Optional[float] = ..., live_coverage: _Optional[float] = ..., refit_coverage: _Optional[float] = ..., live_accuracy: _Optional[float] = ..., refit_accuracy: _Optional[float] = ..., topics: _Optional[_Iterable[_Union[TopicFit, _Mapping]]] = ...) -> None: ...

class RefitConfidenceResponse(_message.Message):
    __slots__ = ("release", "validation")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    release: Release
    validation: FitValidation
    def __init__(self, release: _Optional[_Union[Release, _Mapping]] = ..., validation: _Optional[_Union[FitValidation, _Mapping]] = ...) -> None: ...
