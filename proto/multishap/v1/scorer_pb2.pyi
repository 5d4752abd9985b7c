from multishap.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnswerRequest(_message.Message):
    __slots__ = ("instance", "candidates", "job")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.Instance
    candidates: _containers.RepeatedScalarFieldContainer[str]
    job: str
    def __init__(self, instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., candidates: _Optional[_Iterable[str]] = ..., job: _Optional[str] = ...) -> None: ...

class AnswerResponse(_message.Message):
    __slots__ = ("answer", "scores", "raw", "how", "usage")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    answer: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    raw: str
    how: str
    usage: _common_pb2.Usage
    def __init__(self, answer: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., raw: _Optional[str] = ..., how: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ...) -> None: ...

class Players(_message.Message):
    __slots__ = ("grid", "tokens", "score_semantics", "model_id", "factorised", "caps", "costs", "preferred_batch", "preferred_timeout_seconds")
    GRID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCORE_SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FACTORISED_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    COSTS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_BATCH_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    grid: _common_pb2.Grid
    tokens: _containers.RepeatedScalarFieldContainer[str]
    score_semantics: str
    model_id: str
    factorised: bool
    caps: _common_pb2.SpendingCaps
    costs: Costs
    preferred_batch: int
    preferred_timeout_seconds: float
    def __init__(self, grid: _Optional[_Union[_common_pb2.Grid, _Mapping]] = ..., tokens: _Optional[_Iterable[str]] = ..., score_semantics: _Optional[str] = ..., model_id: _Optional[str] = ..., factorised: _Optional[bool] = ..., caps: _Optional[_Union[_common_pb2.SpendingCaps, _Mapping]] = ..., costs: _Optional[_Union[Costs, _Mapping]] = ..., preferred_batch: _Optional[int] = ..., preferred_timeout_seconds: _Optional[float] = ...) -> None: ...

class Costs(_message.Message):
    __slots__ = ("unit", "image_encode", "text_encode", "coalition")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ENCODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_ENCODE_FIELD_NUMBER: _ClassVar[int]
    COALITION_FIELD_NUMBER: _ClassVar[int]
    unit: str
    image_encode: float
    text_encode: float
    coalition: float
    def __init__(self, unit: _Optional[str] = ..., image_encode: _Optional[float] = ..., text_encode: _Optional[float] = ..., coalition: _Optional[float] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("instance", "num_players", "num_coalitions", "coalitions", "job", "dry_run", "instance_digest")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    NUM_PLAYERS_FIELD_NUMBER: _ClassVar[int]
    NUM_COALITIONS_FIELD_NUMBER: _ClassVar[int]
    COALITIONS_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.Instance
    num_players: int
    num_coalitions: int
    coalitions: bytes
    job: str
    dry_run: bool
    instance_digest: str
    def __init__(self, instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., num_players: _Optional[int] = ..., num_coalitions: _Optional[int] = ..., coalitions: _Optional[bytes] = ..., job: _Optional[str] = ..., dry_run: _Optional[bool] = ..., instance_digest: _Optional[str] = ...) -> None: ...

class ScoreProductRequest(_message.Message):
    __slots__ = ("instance", "instance_digest", "num_patches", "num_tokens", "num_image_masks", "image_masks", "num_text_masks", "text_masks", "job", "dry_run")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    NUM_PATCHES_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGE_MASKS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MASKS_FIELD_NUMBER: _ClassVar[int]
    NUM_TEXT_MASKS_FIELD_NUMBER: _ClassVar[int]
    TEXT_MASKS_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.Instance
    instance_digest: str
    num_patches: int
    num_tokens: int
    num_image_masks: int
    image_masks: bytes
    num_text_masks: int
    text_masks: bytes
    job: str
    dry_run: bool
    def __init__(self, instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., instance_digest: _Optional[str] = ..., num_patches: _Optional[int] = ..., num_tokens: _Optional[int] = ..., num_image_masks: _Optional[int] = ..., image_masks: _Optional[bytes] = ..., num_text_masks: _Optional[int] = ..., text_masks: _Optional[bytes] = ..., job: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("values", "bounded", "usage", "instance_digest")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    BOUNDED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    values: bytes
    bounded: bytes
    usage: _common_pb2.Usage
    instance_digest: str
    def __init__(self, values: _Optional[bytes] = ..., bounded: _Optional[bytes] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., instance_digest: _Optional[str] = ...) -> None: ...
