from multishap.v1 import common_pb2 as _common_pb2
from multishap.v1 import explainer_pb2 as _explainer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_EXPLAIN: _ClassVar[JobKind]
    JOB_KIND_FAITHFULNESS: _ClassVar[JobKind]
    JOB_KIND_DATASET: _ClassVar[JobKind]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_EXPLAIN: JobKind
JOB_KIND_FAITHFULNESS: JobKind
JOB_KIND_DATASET: JobKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class DatasetItem(_message.Message):
    __slots__ = ("id", "instance", "check", "role")
    ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    instance: _common_pb2.Instance
    check: _explainer_pb2.AnswerCheck
    role: str
    def __init__(self, id: _Optional[str] = ..., instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., check: _Optional[_Union[_explainer_pb2.AnswerCheck, _Mapping]] = ..., role: _Optional[str] = ...) -> None: ...

class DatasetRequest(_message.Message):
    __slots__ = ("explain", "items")
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    explain: _explainer_pb2.ExplainRequest
    items: _containers.RepeatedCompositeFieldContainer[DatasetItem]
    def __init__(self, explain: _Optional[_Union[_explainer_pb2.ExplainRequest, _Mapping]] = ..., items: _Optional[_Iterable[_Union[DatasetItem, _Mapping]]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("explain", "faithfulness", "dataset", "name")
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    explain: _explainer_pb2.ExplainRequest
    faithfulness: _explainer_pb2.FaithfulnessRequest
    dataset: DatasetRequest
    name: str
    def __init__(self, explain: _Optional[_Union[_explainer_pb2.ExplainRequest, _Mapping]] = ..., faithfulness: _Optional[_Union[_explainer_pb2.FaithfulnessRequest, _Mapping]] = ..., dataset: _Optional[_Union[DatasetRequest, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class DatasetSummary(_message.Message):
    __slots__ = ("instances", "msr", "sdr")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MSR_FIELD_NUMBER: _ClassVar[int]
    SDR_FIELD_NUMBER: _ClassVar[int]
    instances: int
    msr: float
    sdr: float
    def __init__(self, instances: _Optional[int] = ..., msr: _Optional[float] = ..., sdr: _Optional[float] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "state", "name", "target", "owner", "items", "items_done", "items_failed", "created_unix", "started_unix", "finished_unix", "error", "summary", "usage", "explanation", "faithfulness")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DONE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FAILED_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: JobKind
    state: JobState
    name: str
    target: str
    owner: str
    items: int
    items_done: int
    items_failed: int
    created_unix: float
    started_unix: float
    finished_unix: float
    error: str
    summary: DatasetSummary
    usage: _common_pb2.Usage
    explanation: _explainer_pb2.Explanation
    faithfulness: _explainer_pb2.FaithfulnessResult
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., name: _Optional[str] = ..., target: _Optional[str] = ..., owner: _Optional[str] = ..., items: _Optional[int] = ..., items_done: _Optional[int] = ..., items_failed: _Optional[int] = ..., created_unix: _Optional[float] = ..., started_unix: _Optional[float] = ..., finished_unix: _Optional[float] = ..., error: _Optional[str] = ..., summary: _Optional[_Union[DatasetSummary, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., explanation: _Optional[_Union[_explainer_pb2.Explanation, _Mapping]] = ..., faithfulness: _Optional[_Union[_explainer_pb2.FaithfulnessResult, _Mapping]] = ...) -> None: ...

class JobRow(_message.Message):
    __slots__ = ("row", "item_id", "explanation", "faithfulness", "error", "attempts")
    ROW_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    row: int
    item_id: str
    explanation: _explainer_pb2.Explanation
    faithfulness: _explainer_pb2.FaithfulnessResult
    error: str
    attempts: int
    def __init__(self, row: _Optional[int] = ..., item_id: _Optional[str] = ..., explanation: _Optional[_Union[_explainer_pb2.Explanation, _Mapping]] = ..., faithfulness: _Optional[_Union[_explainer_pb2.FaithfulnessResult, _Mapping]] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id", "after_row")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ROW_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_row: int
    def __init__(self, id: _Optional[str] = ..., after_row: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("row", "job")
    ROW_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    row: JobRow
    job: Job
    def __init__(self, row: _Optional[_Union[JobRow, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...
