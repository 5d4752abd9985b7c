"""Run any backend as a Scorer server (gRPC + health + reflection + /metrics)."""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry

from multishap.service.runtime import RunningServer, start_server
from multishap.v1 import scorer_pb2, scorer_pb2_grpc

from .base import DEFAULT_MAX_IMAGE_PIXELS, ScorerServicer, ScoringBackend

SCORER_SERVICE = scorer_pb2.DESCRIPTOR.services_by_name["Scorer"].full_name


def serve_adapter(
    backend: ScoringBackend,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
    max_workers: int = 16,
    max_message_bytes: int = 64 * 1024 * 1024,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[RunningServer, ScorerServicer]:
    """Start a Scorer server for ``backend``; port 0 picks a free port."""
    registry = CollectorRegistry()
    servicer = ScorerServicer(backend, registry, max_image_pixels=max_image_pixels)
    running = start_server(
        lambda server: scorer_pb2_grpc.add_ScorerServicer_to_server(servicer, server),
        [SCORER_SERVICE],
        registry,
        host=host,
        port=port,
        metrics_port=metrics_port,
        max_workers=max_workers,
        max_message_bytes=max_message_bytes,
    )
    return running, servicer
