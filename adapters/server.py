"""Run any backend as a Scorer server (gRPC + health + reflection + /metrics)."""

from __future__ import annotations

from typing import Callable, Optional, Union

from prometheus_client import CollectorRegistry

from multishap.service.rpc.config import Limits
from multishap.service.rpc.runtime import MAX_CONNECTION_AGE_S, RunningServer, bind_server
from multishap.service.rpc.tls import ServerTLS
from multishap.v1 import scorer_pb2, scorer_pb2_grpc

from multishap.adapters.backend import ScoringBackend
from multishap.adapters.instances import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES
from multishap.adapters.servicer import ScorerServicer

SCORER_SERVICE = scorer_pb2.DESCRIPTOR.services_by_name["Scorer"].full_name


def serve_adapter(
    backend: Union[ScoringBackend, Callable[[], ScoringBackend]],
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
    max_workers: int = 16,
    limits: Limits = Limits(),
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    cache_entries: int = DEFAULT_CACHE_ENTRIES,
    *,
    tls: Optional[ServerTLS] = None,
    metrics_host: str = "127.0.0.1",
    health_port: Optional[int] = None,
    max_connection_age_s: float = MAX_CONNECTION_AGE_S,
) -> tuple[RunningServer, ScorerServicer]:
    """Start a Scorer server for ``backend``; port 0 picks a free port. ``tls``, ``metrics_host``,
    ``health_port`` and ``max_connection_age_s`` are :func:`bind_server`'s.

    ``backend`` may be a function that builds it (loads a model): the ports are bound
    first, so a port in use fails at once rather than after the load. ``cache_entries`` and
    ``cache_bytes`` bound the prepared-instance cache (what instance digests can name).
    """
    registry = CollectorRegistry()
    bound = bind_server(registry, host, port, metrics_port, max_workers, limits.max_message_bytes, tls=tls,
                        metrics_host=metrics_host, health_port=health_port, max_connection_age_s=max_connection_age_s)
    try:
        built = backend if isinstance(backend, ScoringBackend) else backend()
        servicer = ScorerServicer(built, registry, limits, cache_entries=cache_entries, cache_bytes=cache_bytes)
    except BaseException:
        bound.close()
        raise
    running = bound.start(lambda server: scorer_pb2_grpc.add_ScorerServicer_to_server(servicer, server),
                          [SCORER_SERVICE])
    return running, servicer
