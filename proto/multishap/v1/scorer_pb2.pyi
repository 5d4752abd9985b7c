from multishap.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ...) -> None: ...

class Players(_message.Message):
    __slots__ = ("grid", "tokens", "score_semantics", "model_id", "factorised", "caps")
    GRID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCORE_SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FACTORISED_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    grid: _common_pb2.Grid
    tokens: _containers.RepeatedScalarFieldContainer[str]
    score_semantics: str
    model_id: str
    factorised: bool
    caps: _common_pb2.SpendingCaps
    def __init__(self, grid: _Optional[_Union[_common_pb2.Grid, _Mapping]] = ..., tokens: _Optional[_Iterable[str]] = ..., score_semantics: _Optional[str] = ..., model_id: _Optional[str] = ..., factorised: _Optional[bool] = ..., caps: _Optional[_Union[_common_pb2.SpendingCaps, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("instance", "num_players", "num_coalitions", "coalitions", "job", "dry_run")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    NUM_PLAYERS_FIELD_NUMBER: _ClassVar[int]
    NUM_COALITIONS_FIELD_NUMBER: _ClassVar[int]
    COALITIONS_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.Instance
    num_players: int
    num_coalitions: int
    coalitions: bytes
    job: str
    dry_run: bool
    def __init__(self, instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., num_players: _Optional[int] = ..., num_coalitions: _Optional[int] = ..., coalitions: _Optional[bytes] = ..., job: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("values", "bounded", "usage")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    BOUNDED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    values: bytes
    bounded: bytes
    usage: _common_pb2.Usage
    def __init__(self, values: _Optional[bytes] = ..., bounded: _Optional[bytes] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...
