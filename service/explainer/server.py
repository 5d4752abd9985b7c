"""Start the Explainer server: bind first, then build the servicer, and clean up on a failed start."""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry

from multishap.service.explainer.servicer import EXPLAINER_SERVICE, SPARE_RPC_THREADS, ExplainerServicer
from multishap.service.rpc.config import ExplainerConfig
from multishap.service.rpc.runtime import RunningServer, bind_server
from multishap.v1 import explainer_pb2_grpc


def serve_explainer(
    config: ExplainerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
) -> tuple[RunningServer, ExplainerServicer]:
    """Start the Explainer server; port 0 picks a free port. The RPC thread pool holds every
    explanation running or waiting, plus spares for health checks and ListTargets."""
    registry = CollectorRegistry()
    limits = config.limits
    workers = limits.max_concurrent_explanations + limits.max_queued_explanations + SPARE_RPC_THREADS
    bound = bind_server(registry, host, port, metrics_port, workers, limits.max_message_bytes)
    servicer = None
    try:
        servicer = ExplainerServicer(config, registry)
        running = bound.start(lambda server: explainer_pb2_grpc.add_ExplainerServicer_to_server(servicer, server),
                              [EXPLAINER_SERVICE])
    except BaseException:
        if servicer is not None:
            servicer.close()
        bound.close()
        raise
    servicer.readiness.attach(running.health)
    return running, servicer
