"""The Scorer servicer every adapter runs: it translates Describe, Score, ScoreProduct and Answer messages, and counts.

The instance is checked, decoded, prepared and cached by :mod:`.instances` (a request may name
a cached instance by its digest instead of carrying it); the backend (:mod:`.backend`) scores;
coalitions, product masks and scores travel in the packed wire format
(:mod:`multishap.service.rpc.wire`); Prometheus sees forward passes, batch sizes, latency and
how digest requests fare, and Answer requests.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from multishap.adapters.backend import AnswerResult, PreparedInstance, ScoreCall, ScoreResult, ScoringBackend
from multishap.adapters.instances import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, PreparedInstances
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, NotFound, TargetFailed, clip
from multishap.service.rpc.request_checks import check_candidates, check_coalition_count, check_job
from multishap.service.rpc.wire import pack_values, unpack_coalitions, unpack_product_masks
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

MAX_RAW_CHARS = 1000  # of a generative model's text in an AnswerResponse


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
        self.product_requests = Counter(
            "multishap_adapter_score_product_requests", "ScoreProduct requests scored (their coalitions count in "
            "forward_passes, batch_size and score_seconds like Score's)", registry=registry,
        )
        self.digest_requests = Counter(
            "multishap_adapter_digest_requests", "Requests that named their instance by digest: hit (answered "
            "from the cache) or miss (NOT_FOUND, the caller sends the instance again)", ["outcome"],
            registry=registry,
        )
        self.answers = Counter(
            "multishap_adapter_answers", "Answer requests answered: by choosing among candidates, or with the "
            "model's own answer", ["mode"], registry=registry,
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
            costs=self.backend.costs(),
            preferred_batch=self.backend.preferred_batch(),
            preferred_timeout_seconds=self.backend.preferred_timeout(),
        )

    def Score(self, request: scorer_pb2.ScoreRequest, context) -> scorer_pb2.ScoreResponse:
        start = time.perf_counter()
        check_job(request.job)
        check_coalition_count(request.num_coalitions, self.limits)
        prepared = self._prepared(request)
        expected = prepared.num_players
        if request.num_players != expected:
            raise InvalidArgument(
                f"the instance has {prepared.num_patches} patches and {len(prepared.tokens)} tokens "
                f"({expected} players), but the request's coalitions have {request.num_players}"
            )
        masks = unpack_coalitions(request.coalitions, request.num_players, request.num_coalitions)
        call = _score_call(request.job, request.dry_run, context)
        result = self.backend.score(prepared, masks, call)
        return self._response(prepared, result, len(masks), call, start)

    def ScoreProduct(self, request: scorer_pb2.ScoreProductRequest, context) -> scorer_pb2.ScoreResponse:
        start = time.perf_counter()
        check_job(request.job)
        check_coalition_count(request.num_image_masks * request.num_text_masks, self.limits)
        image_masks = unpack_product_masks(request.image_masks, request.num_patches, request.num_image_masks, "image")
        text_masks = unpack_product_masks(request.text_masks, request.num_tokens, request.num_text_masks, "text")
        prepared = self._prepared(request)
        if (request.num_patches, request.num_tokens) != (prepared.num_patches, len(prepared.tokens)):
            raise InvalidArgument(
                f"the instance has {prepared.num_patches} patches and {len(prepared.tokens)} tokens, but the "
                f"request's masks have {request.num_patches} patches (num_patches) and {request.num_tokens} "
                "tokens (num_tokens)"
            )
        call = _score_call(request.job, request.dry_run, context)
        result = self.backend.score_product(prepared, image_masks, text_masks, call)
        response = self._response(prepared, result, len(image_masks) * len(text_masks), call, start)
        if not call.dry_run:
            self.product_requests.inc()
        return response

    def Answer(self, request: scorer_pb2.AnswerRequest, context) -> scorer_pb2.AnswerResponse:
        """The model's own answer to the unmasked instance: the best of the candidates, each scored as Score
        scores the full coalition with the candidate in place of the caption or answer, or without candidates
        the model's greedy text or top class. Candidates are checked before the instance is prepared."""
        check_job(request.job)
        candidates = list(request.candidates)
        check_candidates(candidates, self.limits)
        prepared = self.instances.get(request.instance)
        result = self.backend.answer(prepared, candidates, _score_call(request.job, False, context))
        scores = self._answer_scores(result, len(candidates))
        self.answers.labels(mode="candidates" if candidates else "own").inc()
        return scorer_pb2.AnswerResponse(answer=result.answer, scores=scores, raw=clip(result.raw, MAX_RAW_CHARS),
                                         how=result.how, usage=result.usage)

    @staticmethod
    def _answer_scores(result: AnswerResult, count: int) -> list[float]:
        """The backend's candidate scores, checked: one number per candidate, none NaN."""
        scores = [float(v) for v in result.scores]
        if len(scores) != count:
            raise TargetFailed(f"the backend returned {len(scores)} scores for {count} candidates")
        if np.isnan(scores).any():
            raise TargetFailed("the backend scored a candidate NaN")
        return scores

    def _prepared(self, request: scorer_pb2.ScoreRequest | scorer_pb2.ScoreProductRequest) -> PreparedInstance:
        """The request's instance, or the one its digest names (counted as a hit or a miss)."""
        instance: Optional[common_pb2.Instance] = request.instance if request.HasField("instance") else None
        try:
            prepared = self.instances.resolve(instance, request.instance_digest)
        except NotFound:
            self.digest_requests.labels(outcome="miss").inc()
            raise
        if instance is None:
            self.digest_requests.labels(outcome="hit").inc()
        return prepared

    def _response(self, prepared: PreparedInstance, result: ScoreResult, count: int, call: ScoreCall,
                  start: float) -> scorer_pb2.ScoreResponse:
        """The backend's ``count`` values as a ScoreResponse with the instance's digest; counted unless a dry run."""
        values = np.asarray(result.values, dtype=np.float64)
        if values.shape != (count,):
            raise TargetFailed(f"the backend returned {values.shape} values for {count} coalitions")
        if not call.dry_run:
            self.forward_passes.inc(count)
            self.batch_size.observe(count)
            self.latency.observe(time.perf_counter() - start)
        response = scorer_pb2.ScoreResponse(values=pack_values(values), usage=result.usage,
                                            instance_digest=self.instances.digest(prepared))
        if result.bounded is not None and result.bounded.any():
            response.bounded = np.packbits(np.asarray(result.bounded, dtype=bool)).tobytes()
        return response


def _score_call(job: str, dry_run: bool, context) -> ScoreCall:
    """The request's job, dry-run flag, deadline, and an event set when the RPC ends early."""
    cancelled = threading.Event()
    remaining = context.time_remaining()
    context.add_callback(cancelled.set)
    deadline = None if remaining is None else time.monotonic() + remaining
    return ScoreCall(job=job, dry_run=dry_run, cancelled=cancelled, deadline=deadline)
