"""Server plumbing shared by the explainer and every adapter.

One interceptor turns whatever a handler raises into a status (a deliberate error by the table
of :mod:`.status`, anything else INTERNAL with an error id), refuses
requests that are not valid protobuf with INVALID_ARGUMENT before they reach a handler,
counts every refusal in ``multishap_rpc_errors_total``, caps every message it sends, and
writes one structured log line per RPC. Servers are bound before anything slow happens
(:func:`bind_server`), so a taken port fails at once; every server also serves
grpc.health.v1, server reflection and Prometheus ``/metrics`` (with process metrics) from
a registry of its own, so several servers can share one process, as in tests and the demo.

A server may serve TLS (mutual TLS with a client CA; certificates reloaded when their files change,
see :mod:`.tls`), keep /metrics on its own host (loopback by default, whatever ``host`` is), answer
health checks alone on a second, plaintext port (for Kubernetes gRPC probes when the main port needs
client certificates), and close each connection after ``max_connection_age_s`` (with a grace for the
calls in flight) so that clients re-resolve and spread over new replicas.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent import futures
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from multishap.service import defaults
from multishap.service.rpc.errors import UndecodableRequest, clip
from multishap.service.rpc.status import status_code
from multishap.service.rpc.tls import ServerTLS, server_credentials

log = logging.getLogger("multishap")

# Longest message a reply carries (a sentence, never a dump).
MAX_DETAILS_CHARS = 400
# Methods whose successful calls are logged at DEBUG only (probes run every few seconds).
_QUIET = {"Check", "Watch"}
# How long a client connection lives before the server asks the client to reconnect (0: for ever), and
# how long calls in flight on it then get to finish.
MAX_CONNECTION_AGE_S = 300.0
MAX_CONNECTION_AGE_GRACE_S = 3600.0


class _Undecodable:
    """What the interceptor's deserializer returns for bytes that are not the request message."""


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-safe message for an exception raised by a handler: a deliberate
    error by the table of :mod:`.status`, anything else INTERNAL with an error id that the log keeps
    beside the traceback."""
    code = status_code(exc)
    if code is not None:
        return code, clip(str(exc), MAX_DETAILS_CHARS)
    error_id = uuid.uuid4().hex[:12]
    _TRACEBACKS.log(f"internal error {error_id}", exc)
    return grpc.StatusCode.INTERNAL, f"internal error; the server log has the details (error id {error_id})"


class _RateLimitedTracebacks:
    """Logs at most ``burst`` tracebacks per ``period`` seconds; the rest as one counted line."""

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        self._burst, self._period = burst, period
        self._window_start, self._count, self._suppressed = 0.0, 0, 0
        self._lock = threading.Lock()

    def log(self, message: str, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start > self._period:
                suppressed, self._suppressed = self._suppressed, 0
                self._window_start, self._count = now, 0
                if suppressed:
                    log.error("%d more internal errors in the last %.0f s (tracebacks suppressed)",
                              suppressed, self._period)
            self._count += 1
            detailed = self._count <= self._burst
            if not detailed:
                self._suppressed += 1
        if detailed:
            log.error(message, exc_info=(type(exc), exc, exc.__traceback__))
        else:
            log.error("%s (traceback suppressed: %s)", message, type(exc).__name__)


_TRACEBACKS = _RateLimitedTracebacks()


@dataclass
class RpcRecord:
    """What the log line of one RPC says beyond method, status and duration."""

    fields: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[Optional[RpcRecord]] = ContextVar("multishap_rpc_record", default=None)


def annotate(**values: Any) -> None:
    """Add fields (target, evaluations, ...) to the log line of the RPC this thread is serving."""
    record = _current.get()
    if record is not None:
        record.fields.update(values)


def _log_line(method: str, code: grpc.StatusCode, seconds: float, record: RpcRecord, details: str = "") -> None:
    parts = [f"rpc method={method}", f"code={code.name}", f"seconds={seconds:.3f}"]
    parts += [f"{k}={v}" for k, v in record.fields.items()]
    if details:
        parts.append(f"details={clip(details, 160)!r}")
    level = logging.DEBUG if method in _QUIET and code == grpc.StatusCode.OK else logging.INFO
    log.log(level, " ".join(parts))


def _details(exc: BaseException) -> list[any_pb2.Any]:
    """Rich-status details of a refusal: google.rpc.RetryInfo with the pushback delay of an overload,
    google.rpc.QuotaFailure naming the limit that refused it."""
    details = []
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(detail)
    limit = getattr(exc, "limit", None)
    if limit is not None:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.QuotaFailure(
            violations=[error_details_pb2.QuotaFailure.Violation(subject=limit, description=str(exc))]))
        details.append(detail)
    return details


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, exc: BaseException) -> None:
    """Abort the RPC, with the rich-status details of :func:`_details` when there are any."""
    details = _details(exc)
    if not details:
        context.abort(code, message)
    context.abort_with_status(rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message,
                                                                     details=details)))


class ExceptionInterceptor(grpc.ServerInterceptor):
    """Turns handler exceptions into gRPC statuses, counts and logs every RPC's outcome."""

    def __init__(self, errors: Counter) -> None:
        self._errors = errors

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _refused(self, context, method: str, exc: BaseException, start: float, record: RpcRecord) -> None:
        code, message = status_of(exc)
        ended, said = (code, message) if context.is_active() else _client_end(context)
        self._errors.labels(method=method, code=ended.name).inc()
        _log_line(method, ended, time.perf_counter() - start, record, said)
        _abort(context, code, message, exc)

    def _ended(self, context, method: str, start: float, record: RpcRecord) -> None:
        """Log an RPC that returned normally, or that its client ended (cancel, deadline)."""
        if context.is_active():
            _log_line(method, grpc.StatusCode.OK, time.perf_counter() - start, record)
            return
        code, said = _client_end(context)
        self._errors.labels(method=method, code=code.name).inc()
        _log_line(method, code, time.perf_counter() - start, record, said)

    def _wrap_unary(self, fn: Callable, method: str) -> Callable:
        def wrapped(request, context):
            start, record = _begin()
            try:
                _check_decoded(request, method)
                reply = fn(request, context)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                if isinstance(exc, grpc.RpcError) and context.code() is not None:
                    raise
                self._refused(context, method, exc, start, record)
            self._ended(context, method, start, record)
            return reply

        return wrapped

    def _wrap_stream(self, fn: Callable, method: str) -> Callable:
        def wrapped(request, context):
            start, record = _begin()
            try:
                _check_decoded(request, method)
                for reply in fn(request, context):
                    _current.set(record)
                    yield reply
            except GeneratorExit:
                self._ended(context, method, start, record)
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                if isinstance(exc, grpc.RpcError) and context.code() is not None:
                    raise
                self._refused(context, method, exc, start, record)
            self._ended(context, method, start, record)

        return wrapped


def _begin() -> tuple[float, RpcRecord]:
    """The start time and log record of the RPC this thread begins serving."""
    record = RpcRecord()
    _current.set(record)
    return time.perf_counter(), record


def _check_decoded(request: Any, method: str) -> None:
    """Refuse a request whose bytes did not decode (see :func:`_tolerant`)."""
    if isinstance(request, _Undecodable):
        raise UndecodableRequest(method)


def _client_end(context: grpc.ServicerContext) -> tuple[grpc.StatusCode, str]:
    """How the client ended an RPC: DEADLINE_EXCEEDED once its deadline has passed, else CANCELLED."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the client's deadline passed"
    return grpc.StatusCode.CANCELLED, "the client cancelled the call"


def _tolerant(deserializer: Optional[Callable[[bytes], Any]]) -> Optional[Callable[[bytes], Any]]:
    """``deserializer`` that returns an :class:`_Undecodable` instead of raising on garbage."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any decode failure is the caller's bytes
            return _Undecodable()

    return deserialize


@dataclass
class RunningServer:
    """A started gRPC server with its ports; ``stop()`` shuts down gRPC, the health port and /metrics."""

    server: grpc.Server
    port: int
    metrics_port: Optional[int]
    registry: CollectorRegistry
    health: health.HealthServicer
    _http: Optional[object] = field(default=None, repr=False)
    health_port: Optional[int] = None
    _health_server: Optional[grpc.Server] = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: Optional[float] = None) -> None:
        """Refuse new RPCs, give those in flight ``grace`` seconds, then cancel them."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        _close(self._health_server, self._http)


def _close(health_server: Optional[grpc.Server], http: Optional[object]) -> None:
    """Stop the health-only server and the /metrics server, where there are any."""
    if health_server is not None:
        health_server.stop(None).wait()
    if http is not None:
        http.shutdown()
        http.server_close()


@dataclass
class BoundServer:
    """A gRPC server whose ports are bound but that serves nothing yet (see :func:`bind_server`)."""

    server: grpc.Server
    port: int
    metrics_port: Optional[int]
    registry: CollectorRegistry
    _http: Optional[object] = field(default=None, repr=False)
    health_port: Optional[int] = None
    _health_server: Optional[grpc.Server] = field(default=None, repr=False)

    def start(self, register: Callable[[grpc.Server], None], service_names: Iterable[str]) -> RunningServer:
        """Register the services, health and reflection, and start serving; the health-only port,
        when there is one, answers from the same health status."""
        register(self.server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
        names = list(service_names)
        for name in names + [""]:
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(names + [reflection.SERVICE_NAME, health.SERVICE_NAME], self.server)
        self.server.start()
        if self._health_server is not None:
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self._health_server)
            self._health_server.start()
        return RunningServer(self.server, self.port, self.metrics_port, self.registry, health_servicer, self._http,
                             self.health_port, self._health_server)

    def close(self) -> None:
        """Release the ports of a server that was never started."""
        self.server.stop(None)
        _close(self._health_server, self._http)


def _listen(server: grpc.Server, host: str, port: int, tls: Optional[ServerTLS] = None) -> int:
    """Bind ``host:port`` (plaintext, or TLS); OSError naming the address when it is taken."""
    address = f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address) if tls is None else server.add_secure_port(
            address, server_credentials(tls))
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"could not listen on {address} (is the port in use?)")
    return bound


def _connection_age(seconds: float) -> list[tuple[str, int]]:
    """The channel arguments that close a connection after ``seconds`` (none for 0)."""
    if seconds <= 0:
        return []
    return [("grpc.max_connection_age_ms", int(seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(MAX_CONNECTION_AGE_GRACE_S * 1000))]


def bind_server(
    registry: CollectorRegistry,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
    max_workers: int = 16,
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES,
    *,
    tls: Optional[ServerTLS] = None,
    metrics_host: str = "127.0.0.1",
    health_port: Optional[int] = None,
    max_connection_age_s: float = MAX_CONNECTION_AGE_S,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> BoundServer:
    """Bind the gRPC port (exclusively: no SO_REUSEPORT sharing with another process; TLS with
    ``tls``), the /metrics port on ``metrics_host`` (unless None) and the plaintext health-only port
    (when given); OSError naming the address when one is taken, ValueError for bad TLS files. Port 0
    picks a free port. ``interceptors`` run inside the one that maps exceptions to statuses, so what
    they raise is answered, counted and logged like a handler's error."""
    if max_connection_age_s < 0:
        raise ValueError(f"max_connection_age_s must be at least 0; got {max_connection_age_s!r}")
    errors = Counter("multishap_rpc_errors", "RPCs that ended in an error, by method and status code",
                     ["method", "code"], registry=registry)
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=[ExceptionInterceptor(errors), *interceptors],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ] + _connection_age(max_connection_age_s),
    )
    health_server, health_bound, http, metrics_bound = None, None, None, None
    try:
        bound = _listen(server, host, port, tls)
        if health_port is not None:
            health_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"),
                                        options=[("grpc.so_reuseport", 0)])
            health_bound = _listen(health_server, host, health_port)
        if metrics_port is not None:
            try:
                http, _ = start_http_server(metrics_port, addr=metrics_host, registry=registry)
            except OSError as err:
                raise OSError(f"could not serve /metrics on {metrics_host}:{metrics_port}: {err.strerror}") from None
            metrics_bound = http.server_port
    except BaseException:
        server.stop(None)
        _close(health_server, None)
        raise
    return BoundServer(server, bound, metrics_bound, registry, http, health_bound, health_server)
