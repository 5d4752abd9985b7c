"""The servicer every adapter runs: decode and validate, cache, score, count.

A backend only turns a decoded instance into players (``prepare``) and scores coalitions
(``score``; a local model implements ``forward`` through :class:`ModelBackend`); this module does the rest of the Scorer contract: request limits, image
decoding (allow-listed formats, pixel limit from the header), grid, parameter and mask
checks with sentences a person understands, an LRU cache of prepared instances keyed by
the instance's content hash and bounded in entries and bytes, and Prometheus metrics.
"""

from __future__ import annotations

import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, Mapping, Optional, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, TargetFailed, shown
from multishap.service.rpc.imaging import decode_rgb
from multishap.service.rpc.request_checks import check_coalition_count, check_instance_fields, check_players
from multishap.service.math.validation import check_grid
from multishap.service.rpc.convert import matrix_to_proto
from multishap.service.rpc.wire import pack_values, unpack_coalitions
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

DEFAULT_CACHE_ENTRIES = 64
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class DecodedInstance:
    """An instance with its image decoded to an (H, W, 3) uint8 array."""

    image: np.ndarray
    text: str
    target: str
    rows: int
    cols: int
    masking: common_pb2.MaskingOptions
    parameters: dict[str, str]
    key: str


State = TypeVar("State")


@dataclass(frozen=True)
class PreparedInstance(Generic[State]):
    """What a backend needs to score an instance repeatedly: its players, and the backend's own
    state of the instance (``PreparedInstance[ItsStateType]``: a game, encoded inputs, a renderer)."""

    decoded: DecodedInstance
    tokens: list[str]
    truth: Optional[np.ndarray] = None
    state: Optional[State] = field(default=None, repr=False)

    @property
    def num_patches(self) -> int:
        return self.decoded.rows * self.decoded.cols

    @property
    def num_players(self) -> int:
        return self.num_patches + len(self.tokens)


@dataclass(frozen=True)
class ScoreCall:
    """What a backend may want to know about the Score request it is answering."""

    job: str = ""
    dry_run: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: Optional[float] = None  # time.monotonic() by which the caller wants the answer


@dataclass
class ScoreResult:
    """A backend's answer: values, which of them are bounds, and what they cost."""

    values: np.ndarray
    bounded: Optional[np.ndarray] = None
    usage: Optional[common_pb2.Usage] = None


class ScoringBackend(ABC):
    """A model behind the Scorer contract."""

    model_id: str = "unknown"
    score_semantics: str = "score"
    factorised: bool = False
    # Instance parameters the backend reads (name -> what it means); any other is refused.
    parameters: Mapping[str, str] = {}

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Add backend-specific metrics to the server's registry (none by default)."""

    @abstractmethod
    def prepare(self, instance: DecodedInstance) -> PreparedInstance:
        """Tokenise and set up the instance; raise InvalidArgument for what cannot be scored."""

    @abstractmethod
    def score(self, instance: PreparedInstance, masks: np.ndarray, call: ScoreCall) -> ScoreResult:
        """Answer one Score request: one value per row of the (B, m + n) bool mask array, and its cost."""

    def close(self) -> None:
        """Finish work in flight and release resources (nothing by default)."""


class ModelBackend(ScoringBackend):
    """A model that runs in this process: nothing is billed, so a dry run scores nothing and costs nothing."""

    @abstractmethod
    def forward(self, instance: PreparedInstance, masks: np.ndarray) -> np.ndarray:
        """The model's values for the (B, m + n) bool mask array: one float per row."""

    def score(self, instance: PreparedInstance, masks: np.ndarray, call: ScoreCall) -> ScoreResult:
        if call.dry_run:
            return ScoreResult(np.zeros(len(masks)))
        return ScoreResult(self.forward(instance, masks))


def content_key(instance: common_pb2.Instance) -> str:
    """Hash of everything in the instance; equal instances share one cache entry."""
    return hashlib.sha256(instance.SerializeToString(deterministic=True)).hexdigest()


def decode_instance(instance: common_pb2.Instance, max_image_pixels: int) -> DecodedInstance:
    """Decode the image and check the grid against it."""
    pixels = decode_rgb(instance.image, max_image_pixels)
    rows, cols = instance.grid.rows, instance.grid.cols
    check_grid(rows, cols)
    height, width = pixels.shape[:2]
    if rows > height or cols > width:
        raise InvalidArgument(
            f"the patch grid {rows}x{cols} is larger than the {width}x{height} image: "
            "every patch needs at least one pixel"
        )
    return DecodedInstance(
        image=pixels,
        text=instance.text,
        target=instance.target,
        rows=rows,
        cols=cols,
        masking=instance.masking,
        parameters=dict(instance.parameters),
        key=content_key(instance),
    )


class _LRU:
    """A thread-safe least-recently-used cache bounded in entries and in bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[PreparedInstance, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def get(self, key: str) -> Optional[PreparedInstance]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            return None

    def put(self, key: str, value: PreparedInstance, size: int) -> None:
        """Keep ``value`` (``size`` bytes), evicting the least recently used; one larger
        than the whole cache is not kept."""
        if size > self._max_bytes:
            return
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self.bytes += size
            while len(self._items) > self._max_entries or self.bytes > self._max_bytes:
                self.bytes -= self._items.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._items)


class ScorerServicer(scorer_pb2_grpc.ScorerServicer):
    """The Scorer service over any backend."""

    def __init__(
        self,
        backend: ScoringBackend,
        registry: CollectorRegistry,
        limits: Limits = Limits(),
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.backend = backend
        backend.register_metrics(registry)
        self._cache = _LRU(cache_entries, cache_bytes)
        self.limits = limits
        cached = Gauge("multishap_adapter_cached_instances", "Prepared instances in the cache", registry=registry)
        cached.set_function(lambda: len(self._cache))
        cached_bytes = Gauge("multishap_adapter_cache_bytes", "Memory held by cached prepared instances",
                             registry=registry)
        cached_bytes.set_function(lambda: self._cache.bytes)
        self.forward_passes = Counter(
            "multishap_adapter_forward_passes", "Coalitions scored by the backend", registry=registry
        )
        self.batch_size = Histogram(
            "multishap_adapter_batch_size", "Coalitions per Score request", registry=registry,
            buckets=(1, 8, 64, 256, 1024, 4096, 16384, 65536),
        )
        self.latency = Histogram(
            "multishap_adapter_score_seconds", "Time to score one Score request", registry=registry
        )

    def prepared(self, instance: common_pb2.Instance) -> PreparedInstance:
        """The instance prepared by the backend, from the cache when seen before."""
        key = content_key(instance)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        check_instance_fields(instance, self.limits)
        self._check_parameters(instance.parameters)
        prepared = self.backend.prepare(decode_instance(instance, self.limits.max_image_pixels))
        if not prepared.tokens:
            raise InvalidArgument("the text has no tokens to explain")
        check_players(prepared.num_patches, len(prepared.tokens), self.limits)
        self._cache.put(key, prepared, prepared.decoded.image.nbytes)
        return prepared

    def _check_parameters(self, parameters: Mapping[str, str]) -> None:
        known = self.backend.parameters
        unknown = sorted(set(parameters) - set(known))
        if unknown:
            listed = ", ".join(f"{name} ({meaning})" for name, meaning in known.items()) or "none"
            raise InvalidArgument(f"unknown instance parameter {shown(unknown[0])}; this adapter's parameters: "
                                  f"{listed}")

    def Describe(self, request: scorer_pb2.DescribeRequest, context) -> scorer_pb2.Players:
        prepared = self.prepared(request.instance)
        players = scorer_pb2.Players(
            grid=common_pb2.Grid(rows=prepared.decoded.rows, cols=prepared.decoded.cols),
            tokens=prepared.tokens,
            score_semantics=self.backend.score_semantics,
            model_id=self.backend.model_id,
            factorised=self.backend.factorised,
        )
        if prepared.truth is not None:
            players.truth.CopyFrom(matrix_to_proto(prepared.truth))
        return players

    def Score(self, request: scorer_pb2.ScoreRequest, context) -> scorer_pb2.ScoreResponse:
        start = time.perf_counter()
        check_coalition_count(request.num_coalitions, self.limits)
        prepared = self.prepared(request.instance)
        expected = prepared.num_players
        if request.num_players != expected:
            raise InvalidArgument(
                f"the instance has {prepared.num_patches} patches and {len(prepared.tokens)} tokens "
                f"({expected} players), but the request's coalitions have {request.num_players}"
            )
        masks = unpack_coalitions(request.coalitions, request.num_players, request.num_coalitions)
        call = _score_call(request, context)
        result = self.backend.score(prepared, masks, call)
        values = np.asarray(result.values, dtype=np.float64)
        if values.shape != (len(masks),):
            raise TargetFailed(f"the backend returned {values.shape} values for {len(masks)} coalitions")
        if not call.dry_run:
            self.forward_passes.inc(len(masks))
            self.batch_size.observe(len(masks))
            self.latency.observe(time.perf_counter() - start)
        response = scorer_pb2.ScoreResponse(values=pack_values(values), usage=result.usage)
        if result.bounded is not None and result.bounded.any():
            response.bounded = np.packbits(np.asarray(result.bounded, dtype=bool)).tobytes()
        return response


def _score_call(request: scorer_pb2.ScoreRequest, context) -> ScoreCall:
    """The request's job, dry-run flag, deadline, and an event set when the RPC ends early."""
    cancelled = threading.Event()
    remaining = context.time_remaining()
    context.add_callback(cancelled.set)
    deadline = None if remaining is None else time.monotonic() + remaining
    return ScoreCall(job=request.job, dry_run=request.dry_run, cancelled=cancelled, deadline=deadline)
