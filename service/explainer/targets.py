"""Calling a target's adapters: the value function the estimators see, over gRPC.

A target is a set of replicas of one adapter. Score is stateless and idempotent, so a
call that finds a replica down (UNAVAILABLE, or cut off mid-call) is retried on the next
replica, and a replica that failed is passed over for a short while. The value function
splits each batch of coalitions into Score calls of at most ``max_batch`` rows, keeps up to
``max_in_flight`` of them in flight, and stops as soon as the explanation is cancelled or
its deadline passes, cancelling the calls still in flight.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

from multishap.service.rpc.config import TargetConfig
from multishap.service.rpc.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    TargetFailed,
    Unauthenticated,
    Unavailable,
    clip,
)
from multishap.service.rpc.convert import add_usage
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.service import defaults

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
SCORE_PATH = "/multishap.v1.Scorer/Score"
_PASS_OVER_S = 1.0
# How long a call waits for a replica to (re)connect once every replica has refused it.
_RECONNECT_WAIT_S = 3.0
# Reconnect backoff of the channels to replicas: short, so a restarted adapter is used soon.
_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 2000)]
# Characters of an adapter's own message passed on inside ours.
_ADAPTER_DETAILS_CHARS = 200
# A target's own credential and configuration errors reach the caller with their codes.
_PASSED_THROUGH = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


class CallControl:
    """Cancellation and deadline shared by every call of one explanation.

    ``cancel()`` marks the explanation cancelled and cancels the Score calls in flight;
    the deadline travels with each call as its timeout, so gRPC enforces it.
    """

    def __init__(self, deadline: Optional[float] = None) -> None:
        self.deadline = deadline
        self._cancelled = threading.Event()
        self._in_flight: set = set()
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            in_flight = list(self._in_flight)
        for future in in_flight:
            future.cancel()

    @contextmanager
    def track(self, future) -> Iterator[None]:
        """Keep ``future`` cancellable by :meth:`cancel` while it runs."""
        with self._lock:
            self._in_flight.add(future)
        if self.cancelled:
            future.cancel()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.discard(future)

    def check(self) -> None:
        """Raise DeadlineExceeded once the deadline has passed, else Cancelled once cancelled."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded("the deadline passed before the explanation finished")
        if self.cancelled:
            raise Cancelled("the explanation was cancelled")

    def timeout(self, limit: float) -> float:
        if self.deadline is None:
            return limit
        return max(min(limit, self.deadline - time.monotonic()), 0.001)


class Target:
    """The replicas of one adapter, called round-robin with failover."""

    def __init__(self, config: TargetConfig, max_message_bytes: int = defaults.MAX_MESSAGE_BYTES) -> None:
        self.config = config
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)] + _CHANNEL_OPTIONS
        self._channels = [grpc.insecure_channel(a, options=options) for a in config.addresses]
        # Score takes pre-serialised request bytes (see RemoteValueFunction).
        self._calls = {
            "Describe": [scorer_pb2_grpc.ScorerStub(c).Describe for c in self._channels],
            "Score": [c.unary_unary(SCORE_PATH, response_deserializer=scorer_pb2.ScoreResponse.FromString)
                      for c in self._channels],
        }
        self._health = [health_pb2_grpc.HealthStub(c).Check for c in self._channels]
        self.reachable = False  # set by probe()
        self._turn = itertools.count()
        self._passed_over = [0.0] * len(self._channels)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def _order(self) -> list[int]:
        with self._lock:
            start = next(self._turn) % len(self._channels)
        ring = [(start + k) % len(self._channels) for k in range(len(self._channels))]
        now = time.monotonic()
        return sorted(ring, key=lambda i: self._passed_over[i] > now)

    def call(self, method: str, request, control: CallControl):
        """Call ``method`` on one replica after another until one answers. When every replica
        refused the connection, wait up to ``_RECONNECT_WAIT_S`` for one to (re)connect and
        try it once more, so a replica that has just come up is not missed for its channel's
        reconnect backoff."""
        failures: list[str] = []
        order = self._order()
        for i in order:
            reply = self._attempt(method, request, control, i, failures)
            if reply is not None:
                return reply
        if len(failures) == len(order) and all(" UNAVAILABLE " in f" {f} " for f in failures):
            i = self._first_ready(order, control)
            if i is not None:
                reply = self._attempt(method, request, control, i, [])
                if reply is not None:
                    return reply
        control.check()
        raise Unavailable(
            f"target {self.name!r} is unavailable: none of its {len(self._channels)} replicas answered "
            f"({'; '.join(failures)})"
        )

    def _attempt(self, method: str, request, control: CallControl, i: int, failures: list[str]):
        """One call to replica ``i``: its reply, or None after a retryable failure (noted in ``failures``)."""
        control.check()
        future = self._calls[method][i].future(request, timeout=control.timeout(self.config.timeout_s))
        try:
            with control.track(future):
                return future.result()
        except grpc.FutureCancelledError:
            control.check()
            raise
        except grpc.RpcError as err:
            control.check()
            code = err.code()
            if code not in RETRYABLE:
                raise self._translate(err) from None
            with self._lock:
                self._passed_over[i] = time.monotonic() + _PASS_OVER_S
            failures.append(f"replica {i + 1}: {code.name} {_details(err, self.config.addresses)}")
            return None

    def _first_ready(self, order: list[int], control: CallControl) -> Optional[int]:
        """The first replica whose channel becomes ready within the reconnect wait, or None."""
        readies = [grpc.channel_ready_future(self._channels[i]) for i in order]
        stop = time.monotonic() + control.timeout(_RECONNECT_WAIT_S)
        try:
            while time.monotonic() < stop:
                control.check()
                for i, ready in zip(order, readies):
                    if ready.done():
                        return i
                time.sleep(0.02)
            return None
        finally:
            for ready in readies:
                ready.cancel()

    def probe(self, timeout: float = 1.0) -> bool:
        """Whether any replica answers a health check with SERVING; kept in ``reachable``."""
        reachable = False
        for check in self._health:
            try:
                reply = check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError:
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                reachable = True
                break
        self.reachable = reachable
        return reachable

    def _translate(self, err: grpc.RpcError) -> ServiceError:
        code, details = err.code(), _details(err, self.config.addresses)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgument(f"target {self.name!r} refused the instance: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"target {self.name!r} did not answer in time: {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(f"target {self.name!r} is over a limit: {details}", *_pushback_and_limit(err))
        if code in _PASSED_THROUGH:
            return _PASSED_THROUGH[code](f"target {self.name!r}: {details}")
        return TargetFailed(f"target {self.name!r} failed ({code.name}): {details}")

    def describe(self, instance: common_pb2.Instance, control: CallControl) -> scorer_pb2.Players:
        return self.call("Describe", scorer_pb2.DescribeRequest(instance=instance), control)

    def value_function(
        self,
        instance: common_pb2.Instance,
        num_players: int,
        control: CallControl,
        on_scored: Callable[[int], None] = lambda count: None,
        dry_run: bool = False,
    ) -> "RemoteValueFunction":
        """The estimators' value_fn over this target's Score calls."""
        return RemoteValueFunction(self, instance, num_players, control, on_scored, dry_run)


# Peer addresses as gRPC's transport errors write them ("ipv4:10.0.0.5:50051", "ipv6:[::1]:50051").
_PEER = re.compile(r"\b(?:ipv4|ipv6|unix|unix-abstract|dns):\S*?(?=[\s),;]|$)")


def _pushback_and_limit(err: grpc.RpcError) -> tuple[Optional[float], Optional[str]]:
    """The RetryInfo delay and the QuotaFailure subject of an adapter's refusal, so the caller gets them too."""
    try:
        status = rpc_status.from_call(err)
    except (ValueError, DecodeError):
        return None, None
    retry_after = limit = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = max(info.retry_delay.ToTimedelta().total_seconds(), 0.0)
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            limit = quota.violations[0].subject if quota.violations else None
    return retry_after, limit


def _details(err: grpc.RpcError, addresses: tuple[str, ...]) -> str:
    """An adapter's or the transport's error message, capped and without replica addresses
    (those stay server-side): it is quoted inside ours."""
    details = _PEER.sub("<replica>", err.details() or "")
    for address in addresses:
        bare = address.split("://", 1)[-1].lstrip("/")
        host = bare.rsplit(":", 1)[0] if ":" in bare else bare
        for form in (address, bare, host):
            if form:
                details = details.replace(form, "<replica>")
    return clip(details, _ADAPTER_DETAILS_CHARS)


class RemoteValueFunction:
    """value_fn(masks) -> values over Score calls; raises ServiceError subclasses on failure.

    Each call is split into Score requests of at most ``max_batch`` coalitions, up to
    ``max_in_flight`` of them at once. The instance (with its image) is serialised once:
    a serialised protobuf message followed by another is the merge of the two, so each
    request is those bytes plus the serialised coalitions. Every request carries one job
    name (for the target's per-explanation limits); ``usage`` sums what the target says
    scoring cost. ``close()`` releases the worker threads.
    """

    def __init__(
        self,
        target: Target,
        instance: common_pb2.Instance,
        num_players: int,
        control: CallControl,
        on_scored: Callable[[int], None],
        dry_run: bool = False,
    ) -> None:
        self._target, self._players = target, num_players
        self._prefix = scorer_pb2.ScoreRequest(instance=instance, num_players=num_players, job=uuid.uuid4().hex,
                                               dry_run=dry_run).SerializeToString()
        self.usage = common_pb2.Usage()
        self._usage_lock = threading.Lock()
        self._control, self._on_scored = control, on_scored
        self._pool = ThreadPoolExecutor(max_workers=target.config.max_in_flight,
                                        thread_name_prefix=f"score-{target.name}")

    def _score_chunk(self, masks: np.ndarray) -> np.ndarray:
        name = self._target.name
        request = self._prefix + scorer_pb2.ScoreRequest(
            num_coalitions=len(masks), coalitions=pack_coalitions(masks)
        ).SerializeToString()
        response = self._target.call("Score", request, self._control)
        try:
            values = unpack_values(response.values, len(masks))
        except ValueError as err:
            raise TargetFailed(f"target {name!r} answered wrongly: {err}") from None
        bad = ~np.isfinite(values)
        if bad.any():
            raise TargetFailed(
                f"target {name!r} returned NaN or infinity for {int(bad.sum())} of "
                f"{len(values)} coalitions; its scores must be finite"
            )
        with self._usage_lock:
            add_usage(self.usage, response.usage)
        self._on_scored(len(masks))
        return values

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self._control.check()
        step = self._target.config.max_batch
        if len(masks) <= step:
            return self._score_chunk(masks)
        futures = [self._pool.submit(self._score_chunk, masks[k : k + step]) for k in range(0, len(masks), step)]
        try:
            return np.concatenate([f.result() for f in futures])
        except BaseException:
            # One chunk failed: stop its siblings rather than let them run on.
            self._control.cancel()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
