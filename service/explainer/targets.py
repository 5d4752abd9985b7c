"""Calling a target's adapters: the value function the estimators see, over gRPC.

A target is a set of replicas of one adapter. Score is stateless and idempotent, so a
call that finds a replica down (UNAVAILABLE, or cut off mid-call) is retried on the next
replica, and a replica that failed is passed over for a short while. The value function
splits each batch of coalitions into Score calls of at most ``max_batch`` rows (fewer when
the adapter prefers smaller calls), keeps up to ``max_in_flight`` of them in flight, and
stops as soon as the explanation is cancelled or its deadline passes, cancelling the calls
still in flight. Once an adapter has answered with the instance's digest, later calls send
the digest instead of the instance; a replica that does not hold it is sent the instance again.

A replica is one channel, to one address; an address that resolves to many servers (``dns:///`` of a
headless Service, ``ipv4:a:p,b:p``) is balanced round-robin by its channel. A digest sent there may reach
a server that never saw the instance: it answers NOT_FOUND and is sent the instance, so a server
new to the instance costs one extra call. Channels use the target's TLS settings when it has them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

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
from multishap.service.math.costs import COALITIONS, CostModel
from multishap.service.math.validation import ArgumentError
from multishap.service.rpc.convert import add_usage
from multishap.service.rpc.tls import open_channel
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.service import defaults

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
SCORE_PATH = "/multishap.v1.Scorer/Score"
SCORE_PRODUCT_PATH = "/multishap.v1.Scorer/ScoreProduct"
_PASS_OVER_S = 1.0
# How long a call waits for a replica to (re)connect once every replica has refused it.
_RECONNECT_WAIT_S = 3.0
# Reconnect backoff of the channels to replicas: short, so a restarted adapter is used soon. Each channel
# spreads its calls round-robin over every address its name resolves to, so one address may be a
# Kubernetes headless Service (dns:///adapter.ns.svc:50051) whose pods are replicas behind one channel.
_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 2000),
                    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))]
# Characters of an adapter's own message passed on inside ours.
_ADAPTER_DETAILS_CHARS = 200
# A target's own credential and configuration errors reach the caller with their codes.
_PASSED_THROUGH = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}
# Longest instance digest an adapter's answer may give for later calls to send back.
_MAX_DIGEST_CHARS = 128
# Most (image mask, text mask) pairs one ScoreProduct call asks for: 512 KiB of values.
PRODUCT_VALUES = 1 << 16
# An adapter may ask for longer Score calls than the target's timeout_s, up to this many times it.
PREFERRED_TIMEOUT_FACTOR = 10.0
# Bounds on an adapter's declared prices (per encode or coalition) and the length of its unit's name.
_MAX_PRICE = 1e6
_MAX_UNIT_CHARS = 40


class InstanceNotHeld(TargetFailed):
    """A replica answered NOT_FOUND: it does not hold the instance a digest named. The value function
    sends the instance again (to ``replica`` first); should it ever reach a caller, it is a target failure."""

    def __init__(self, message: str, replica: int) -> None:
        super().__init__(message)
        self.replica = replica


class TargetUnimplemented(TargetFailed):
    """The target does not implement the method called (an adapter that cannot answer, or an older one)."""


@dataclass(frozen=True)
class CallSizing:
    """Coalitions per Score call and each call's timeout (before the explanation's deadline caps it)."""

    batch: int
    timeout_s: float


def call_sizing(config: TargetConfig, players: Optional[scorer_pb2.Players]) -> CallSizing:
    """The configured batch and timeout, adjusted to what the adapter's Describe reply prefers: at most
    its preferred batch, at least its preferred timeout (a preference of 0 is none) but never more than
    ``PREFERRED_TIMEOUT_FACTOR`` times the configured one, so an adapter cannot hold a call for ever."""
    batch, timeout = config.max_batch, config.timeout_s
    if players is not None:
        if players.preferred_batch > 0:
            batch = min(batch, players.preferred_batch)
        preferred = players.preferred_timeout_seconds
        if math.isfinite(preferred) and preferred > 0:
            timeout = min(max(timeout, preferred), PREFERRED_TIMEOUT_FACTOR * config.timeout_s)
    return CallSizing(batch, timeout)


def cost_model_of(players: Optional[scorer_pb2.Players], target: str) -> CostModel:
    """The adapter's costs from its Describe reply as the math's CostModel; one unit per coalition when it
    gives none. TargetFailed when they are not finite, non-negative numbers with something to pay for."""
    if players is None or not players.HasField("costs") or not players.costs.unit:
        return COALITIONS
    costs = players.costs
    prices = (costs.image_encode, costs.text_encode, costs.coalition)
    if not all(math.isfinite(p) and 0 <= p <= _MAX_PRICE for p in prices) or not any(prices):
        raise TargetFailed(f"target {target!r} described invalid costs (image_encode {costs.image_encode!r}, "
                           f"text_encode {costs.text_encode!r}, coalition {costs.coalition!r}): each must be a "
                           f"number from 0 to {_MAX_PRICE:g}, and not all 0")
    unit = "".join(c for c in costs.unit if c.isprintable())[:_MAX_UNIT_CHARS] or "units"
    return CostModel(unit=unit, image_encode=costs.image_encode, text_encode=costs.text_encode,
                     coalition=costs.coalition)


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

    def wait_cancelled(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for :meth:`cancel`; True once cancelled."""
        return self._cancelled.wait(seconds)

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
        self._channels = [open_channel(a, config.tls, options=options) for a in config.addresses]
        # Score and ScoreProduct take pre-serialised request bytes (see RemoteValueFunction).
        self._calls = {
            "Describe": [scorer_pb2_grpc.ScorerStub(c).Describe for c in self._channels],
            "Answer": [scorer_pb2_grpc.ScorerStub(c).Answer for c in self._channels],
            "Score": [c.unary_unary(SCORE_PATH, response_deserializer=scorer_pb2.ScoreResponse.FromString)
                      for c in self._channels],
            "ScoreProduct": [c.unary_unary(SCORE_PRODUCT_PATH,
                                           response_deserializer=scorer_pb2.ScoreResponse.FromString)
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

    def _order(self, first: Optional[int] = None) -> list[int]:
        """The replicas to try, round-robin (from ``first`` when given), those passed over last."""
        with self._lock:
            start = next(self._turn) % len(self._channels) if first is None else first
        ring = [(start + k) % len(self._channels) for k in range(len(self._channels))]
        now = time.monotonic()
        return sorted(ring, key=lambda i: self._passed_over[i] > now)

    def call(self, method: str, request, control: CallControl):
        """``method``'s reply from the first replica that answers (see :meth:`call_replica`)."""
        return self.call_replica(method, request, control)[0]

    def call_one(self, method: str, request, control: CallControl, replica: int, timeout_s: float):
        """``method`` at ``replica`` alone, for a request only that replica can read (one naming its own
        digest): its reply, or None after a retryable failure. NOT_FOUND raises InstanceNotHeld."""
        return self._attempt(method, request, control, replica, [], timeout_s, digest=True)

    def next_replica(self) -> int:
        """The replica round-robin would try first now."""
        return self._order()[0]

    def call_replica(self, method: str, request, control: CallControl, timeout_s: Optional[float] = None,
                     first: Optional[int] = None) -> tuple[object, int]:
        """Call ``method`` on one replica after another (from replica ``first`` when given) until one
        answers, each attempt given ``timeout_s`` (default: the target's timeout) within the deadline.
        When every replica refused the connection, wait up to ``_RECONNECT_WAIT_S`` for one to
        (re)connect and try it once more, so a replica that has just come up is not missed for its
        channel's reconnect backoff. Returns the reply and the replica that gave it."""
        failures: list[str] = []
        order = self._order(first)
        limit = self.config.timeout_s if timeout_s is None else timeout_s
        for i in order:
            reply = self._attempt(method, request, control, i, failures, limit)
            if reply is not None:
                return reply, i
        if len(failures) == len(order) and all(" UNAVAILABLE " in f" {f} " for f in failures):
            i = self._first_ready(order, control)
            if i is not None:
                reply = self._attempt(method, request, control, i, [], limit)
                if reply is not None:
                    return reply, i
        control.check()
        raise Unavailable(
            f"target {self.name!r} is unavailable: none of its {len(self._channels)} replicas answered "
            f"({'; '.join(failures)})"
        )

    def _attempt(self, method: str, request, control: CallControl, i: int, failures: list[str], limit: float,
                 digest: bool = False):
        """One call to replica ``i``: its reply, or None after a retryable failure (noted in ``failures``).
        For a request by ``digest``, NOT_FOUND raises InstanceNotHeld (send the instance again)."""
        control.check()
        future = self._calls[method][i].future(request, timeout=control.timeout(limit))
        try:
            with control.track(future):
                return future.result()
        except grpc.FutureCancelledError:
            control.check()
            raise
        except grpc.RpcError as err:
            control.check()
            code = err.code()
            if digest and code == grpc.StatusCode.NOT_FOUND:
                raise InstanceNotHeld(f"target {self.name!r} replica {i + 1} does not hold the instance: "
                                      f"{_details(err, self.config.addresses)}", i) from None
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
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return TargetUnimplemented(f"target {self.name!r} does not implement this: {details}")
        return TargetFailed(f"target {self.name!r} failed ({code.name}): {details}")

    def describe(self, instance: common_pb2.Instance, control: CallControl) -> scorer_pb2.Players:
        return self.call("Describe", scorer_pb2.DescribeRequest(instance=instance), control)

    def answer(self, instance: common_pb2.Instance, candidates: Sequence[str], job: str,
               control: CallControl) -> scorer_pb2.AnswerResponse:
        """The model's own answer to the unmasked instance (see Scorer.Answer); retried on another replica like
        Describe, since answering twice gives the same answer."""
        return self.call("Answer", scorer_pb2.AnswerRequest(instance=instance, candidates=candidates, job=job),
                         control)

    def value_function(
        self,
        instance: common_pb2.Instance,
        num_players: int,
        control: CallControl,
        on_scored: Callable[[int], None] = lambda count: None,
        dry_run: bool = False,
        players: Optional[scorer_pb2.Players] = None,
        send_digests: bool = True,
    ) -> "RemoteValueFunction":
        """The estimators' value_fn over this target's Score and ScoreProduct calls, sized and priced
        from ``players`` (the target's Describe reply) when given."""
        return RemoteValueFunction(self, instance, num_players, control, on_scored, dry_run, players=players,
                                   send_digests=send_digests)


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
    """value_fn(masks) -> values over Score calls, and ``product(image_masks, text_masks)`` over
    ScoreProduct calls; raises ServiceError subclasses on failure.

    Each call is split into requests of at most ``batch`` coalitions (the target's ``max_batch``, or
    the adapter's preferred batch when smaller), up to ``max_in_flight`` of them at once, each given
    the target's timeout or the adapter's preferred one when longer. The instance (with its image)
    is serialised once: a serialised protobuf message followed by another is the merge of the two,
    so each request is those bytes plus the serialised coalitions. Once a reply has named the
    instance's digest, requests carry the digest instead of the instance (unless ``send_digests``
    is off); a replica that answers NOT_FOUND is sent that request again with the instance. Every
    request carries one job name (for the target's per-explanation limits); ``usage`` sums what the
    target says scoring cost, and ``costs`` is the target's CostModel. ``close()`` releases the
    worker threads.
    """

    def __init__(
        self,
        target: Target,
        instance: common_pb2.Instance,
        num_players: int,
        control: CallControl,
        on_scored: Callable[[int], None],
        dry_run: bool = False,
        players: Optional[scorer_pb2.Players] = None,
        send_digests: bool = True,
    ) -> None:
        self._target, self._players = target, num_players
        self._job, self._dry_run, self._send_digests = uuid.uuid4().hex, dry_run, send_digests
        self._with_instance = {
            "Score": scorer_pb2.ScoreRequest(instance=instance, num_players=num_players, job=self._job,
                                             dry_run=dry_run).SerializeToString(),
            "ScoreProduct": scorer_pb2.ScoreProductRequest(instance=instance, job=self._job,
                                                           dry_run=dry_run).SerializeToString(),
        }
        # Per replica, the request prefixes that carry the digest that replica named (replaced whole,
        # so worker threads never see half of one). Replicas are asked by digest only for their own.
        self._by_digest: dict[int, dict[str, bytes]] = {}
        self.costs = cost_model_of(players, target.name)
        self.sizing = call_sizing(target.config, players)
        self.usage = common_pb2.Usage()
        self._usage_lock = threading.Lock()
        self._control, self._on_scored = control, on_scored
        self._pool = ThreadPoolExecutor(max_workers=target.config.max_in_flight,
                                        thread_name_prefix=f"score-{target.name}")

    @property
    def job(self) -> str:
        """The job name every request of this value function carries."""
        return self._job

    def add_usage(self, usage: common_pb2.Usage) -> None:
        """Count another call's usage (an Answer of the same explanation) in ``usage``."""
        with self._usage_lock:
            add_usage(self.usage, usage)

    def _learn(self, replica: int, digest: str) -> None:
        """Ask ``replica`` by ``digest`` from now on; a reply without a usable digest (an adapter that
        cannot hold the instance, or one that predates digests) stops that."""
        if not self._send_digests or not digest or len(digest) > _MAX_DIGEST_CHARS:
            self._by_digest.pop(replica, None)
            return
        self._by_digest[replica] = {
            "Score": scorer_pb2.ScoreRequest(instance_digest=digest, num_players=self._players, job=self._job,
                                             dry_run=self._dry_run).SerializeToString(),
            "ScoreProduct": scorer_pb2.ScoreProductRequest(instance_digest=digest, job=self._job,
                                                           dry_run=self._dry_run).SerializeToString(),
        }

    def _request(self, method: str, body: bytes, count: int) -> np.ndarray:
        """One Score or ScoreProduct request (``body``: its serialised fields beyond the instance) and its
        ``count`` checked values. A replica that named a digest is asked by it; when a digest request is
        refused (NOT_FOUND, or INVALID_ARGUMENT from a replica that cannot read digests), the request is
        sent again with the instance."""
        timeout, replica = self.sizing.timeout_s, self._target.next_replica()
        known = self._by_digest.get(replica)
        response = None
        if known is not None:
            try:
                response = self._target.call_one(method, known[method] + body, self._control, replica, timeout)
            except (InstanceNotHeld, InvalidArgument):
                self._by_digest.pop(replica, None)
        if response is None:
            response, replica = self._target.call_replica(method, self._with_instance[method] + body,
                                                          self._control, timeout, first=replica)
        self._learn(replica, response.instance_digest)
        name = self._target.name
        try:
            values = unpack_values(response.values, count)
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
        self._on_scored(count)
        return values

    def _score_chunk(self, masks: np.ndarray) -> np.ndarray:
        body = scorer_pb2.ScoreRequest(num_coalitions=len(masks), coalitions=pack_coalitions(masks))
        return self._request("Score", body.SerializeToString(), len(masks))

    def _product_block(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        body = scorer_pb2.ScoreProductRequest(
            num_patches=image_masks.shape[1], num_tokens=text_masks.shape[1],
            num_image_masks=len(image_masks), image_masks=pack_coalitions(image_masks),
            num_text_masks=len(text_masks), text_masks=pack_coalitions(text_masks))
        values = self._request("ScoreProduct", body.SerializeToString(), len(image_masks) * len(text_masks))
        return values.reshape(len(image_masks), len(text_masks))

    def _run(self, work: list[Callable[[], np.ndarray]]) -> list[np.ndarray]:
        """The requests' results in order: one runs here, more go to the pool, and when one fails its
        siblings are cancelled rather than left to run on."""
        if len(work) == 1:
            return [work[0]()]
        futures = [self._pool.submit(job) for job in work]
        try:
            return [f.result() for f in futures]
        except BaseException:
            self._control.cancel()
            raise

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self._control.check()
        step = self.sizing.batch
        chunks = [masks[k : k + step] for k in range(0, len(masks), step)] or [masks]
        return np.concatenate(self._run([lambda c=c: self._score_chunk(c) for c in chunks]))

    def product(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        """The (A, B) values of every image mask (A, m) with every text mask (B, n), image-major, over
        ScoreProduct requests (blocks of image and text masks). What a product call costs is its encodes,
        not its pairs: a block holds at most ``batch`` image masks (the calls' work the adapter prefers,
        were every coalition a new image) and at most ``PRODUCT_VALUES`` pairs (its reply's size)."""
        image_masks, text_masks = np.asarray(image_masks, dtype=bool), np.asarray(text_masks, dtype=bool)
        shapes_fit = image_masks.ndim == text_masks.ndim == 2 and min(*image_masks.shape, *text_masks.shape) > 0
        if not shapes_fit or image_masks.shape[1] + text_masks.shape[1] != self._players:
            raise ArgumentError(f"product needs (A, m) image masks and (B, n) text masks, A, B, m and n at least 1 "
                                f"and m + n = {self._players} players; got {image_masks.shape} and "
                                f"{text_masks.shape}")
        self._control.check()
        b_step = min(len(text_masks), PRODUCT_VALUES)
        a_step = max(1, min(self.sizing.batch, PRODUCT_VALUES // b_step))
        blocks = [(a, b) for a in range(0, len(image_masks), a_step) for b in range(0, len(text_masks), b_step)]
        results = self._run([lambda a=a, b=b: self._product_block(image_masks[a : a + a_step],
                                                                  text_masks[b : b + b_step]) for a, b in blocks])
        values = np.empty((len(image_masks), len(text_masks)), dtype=np.float64)
        for (a, b), block in zip(blocks, results):
            values[a : a + a_step, b : b + b_step] = block
        return values

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
