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
