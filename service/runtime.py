"""Server plumbing shared by the explainer and every adapter.

One interceptor maps exceptions to status codes (ServiceError -> its code, ValueError ->
INVALID_ARGUMENT, anything else -> INTERNAL with no traceback), and counts them; every
server also serves grpc.health.v1, server reflection and Prometheus ``/metrics`` from a
registry of its own (so several servers can share one process, as in tests and the demo).
"""

from __future__ import annotations

import logging
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, start_http_server

from .errors import ServiceError

log = logging.getLogger("multishap")


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-safe message for an exception raised by a handler."""
    if isinstance(exc, ServiceError):
        return exc.code, str(exc)
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error %s", incident)
    return grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); the server log has the details"


class ExceptionInterceptor(grpc.ServerInterceptor):
    """Turns handler exceptions into gRPC statuses and counts errors by code."""

    def __init__(self, errors: Counter) -> None:
        self._errors = errors

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _fail(self, context: grpc.ServicerContext, method: str, exc: BaseException) -> None:
        code, message = status_of(exc)
        self._errors.labels(method=method, code=code.name).inc()
        context.abort(code, message)

    def _wrap_unary(self, fn: Callable, method: str) -> Callable:
        def wrapped(request, context):
            try:
                return fn(request, context)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                if isinstance(exc, grpc.RpcError) and context.code() is not None:
                    raise
                self._fail(context, method, exc)

        return wrapped

    def _wrap_stream(self, fn: Callable, method: str) -> Callable:
        def wrapped(request, context):
            try:
                yield from fn(request, context)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                if isinstance(exc, grpc.RpcError) and context.code() is not None:
                    raise
                self._fail(context, method, exc)

        return wrapped


@dataclass
class RunningServer:
    """A started gRPC server with its ports; ``stop()`` shuts down gRPC and /metrics."""

    server: grpc.Server
    port: int
    metrics_port: Optional[int]
    registry: CollectorRegistry
    health: health.HealthServicer
    _http: Optional[object] = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: Optional[float] = None) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_server(
    register: Callable[[grpc.Server], None],
    service_names: Iterable[str],
    registry: CollectorRegistry,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
    max_workers: int = 16,
    max_message_bytes: int = 64 * 1024 * 1024,
) -> RunningServer:
    """Start a server with the interceptor, health, reflection and (unless metrics_port is
    None) a /metrics HTTP endpoint; port 0 picks a free port."""
    errors = Counter("multishap_rpc_errors", "RPCs that ended in an error, by method and status code",
                     ["method", "code"], registry=registry)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[ExceptionInterceptor(errors)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    for name in names + [""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(names + [reflection.SERVICE_NAME, health.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not listen on {host}:{port}")
    server.start()
    http, metrics_bound = None, None
    if metrics_port is not None:
        http, _ = start_http_server(metrics_port, addr=host, registry=registry)
        metrics_bound = http.server_port
    return RunningServer(server, bound, metrics_bound, registry, health_servicer, http)
