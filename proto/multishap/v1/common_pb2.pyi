from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageBaseline(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_BASELINE_UNSPECIFIED: _ClassVar[ImageBaseline]
    IMAGE_BASELINE_ZERO: _ClassVar[ImageBaseline]
    IMAGE_BASELINE_MEAN: _ClassVar[ImageBaseline]
    IMAGE_BASELINE_BLUR: _ClassVar[ImageBaseline]
IMAGE_BASELINE_UNSPECIFIED: ImageBaseline
IMAGE_BASELINE_ZERO: ImageBaseline
IMAGE_BASELINE_MEAN: ImageBaseline
IMAGE_BASELINE_BLUR: ImageBaseline

class Grid(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class MaskingOptions(_message.Message):
    __slots__ = ("image_baseline", "blur_radius", "text_mask")
    IMAGE_BASELINE_FIELD_NUMBER: _ClassVar[int]
    BLUR_RADIUS_FIELD_NUMBER: _ClassVar[int]
    TEXT_MASK_FIELD_NUMBER: _ClassVar[int]
    image_baseline: ImageBaseline
    blur_radius: float
    text_mask: str
    def __init__(self, image_baseline: _Optional[_Union[ImageBaseline, str]] = ..., blur_radius: _Optional[float] = ..., text_mask: _Optional[str] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("image", "text", "target", "grid", "masking", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    MASKING_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    text: str
    target: str
    grid: Grid
    masking: MaskingOptions
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, image: _Optional[bytes] = ..., text: _Optional[str] = ..., target: _Optional[str] = ..., grid: _Optional[_Union[Grid, _Mapping]] = ..., masking: _Optional[_Union[MaskingOptions, _Mapping]] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Matrix(_message.Message):
    __slots__ = ("rows", "cols", "values")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "cost", "retries", "bounded", "image_encodes", "text_encodes")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    BOUNDED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ENCODES_FIELD_NUMBER: _ClassVar[int]
    TEXT_ENCODES_FIELD_NUMBER: _ClassVar[int]
    requests: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    retries: int
    bounded: int
    image_encodes: int
    text_encodes: int
    def __init__(self, requests: _Optional[int] = ..., cache_hits: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost: _Optional[float] = ..., retries: _Optional[int] = ..., bounded: _Optional[int] = ..., image_encodes: _Optional[int] = ..., text_encodes: _Optional[int] = ...) -> None: ...

class SpendingCaps(_message.Message):
    __slots__ = ("max_requests", "max_cost")
    MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_FIELD_NUMBER: _ClassVar[int]
    max_requests: int
    max_cost: float
    def __init__(self, max_requests: _Optional[int] = ..., max_cost: _Optional[float] = ...) -> None: ...
