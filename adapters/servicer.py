"""The Scorer servicer every adapter runs: it translates Describe and Score messages, and counts.

The instance is checked, decoded, prepared and cached by :mod:`.instances`; the backend
(:mod:`.backend`) scores; coalitions and scores travel in the packed wire format
(:mod:`multishap.service.rpc.wire`); Prometheus sees forward passes, batch sizes and latency.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from multishap.adapters.backend import ScoreCall, ScoringBackend
from multishap.adapters.instances import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, PreparedInstances
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, TargetFailed
from multishap.service.rpc.request_checks import check_coalition_count
from multishap.service.rpc.wire import pack_values, unpack_coalitions
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc


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
        self.limits = limits
        self.instances = PreparedInstances(backend, limits, cache_entries, cache_bytes)
        cached = Gauge("multishap_adapter_cached_instances", "Prepared instances in the cache", registry=registry)
        cached.set_function(lambda: len(self.instances.cache))
        cached_bytes = Gauge("multishap_adapter_cache_bytes", "Memory held by cached prepared instances",
                             registry=registry)
        cached_bytes.set_function(lambda: self.instances.cache.bytes)
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

    def Describe(self, request: scorer_pb2.DescribeRequest, context) -> scorer_pb2.Players:
        prepared = self.instances.get(request.instance)
        return scorer_pb2.Players(
            grid=common_pb2.Grid(rows=prepared.decoded.rows, cols=prepared.decoded.cols),
            tokens=prepared.tokens,
            score_semantics=self.backend.score_semantics,
            model_id=self.backend.model_id,
            factorised=self.backend.factorised,
            caps=self.backend.spending_caps(),
        )

    def Score(self, request: scorer_pb2.ScoreRequest, context) -> scorer_pb2.ScoreResponse:
        start = time.perf_counter()
        check_coalition_count(request.num_coalitions, self.limits)
        prepared = self.instances.get(request.instance)
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
