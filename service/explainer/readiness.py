"""Readiness: a background probe of every target's replicas, reflected in grpc.health.v1.

The service name ``multishap.v1.Explainer`` is SERVING while at least one target has a
replica that answers its health check (readiness), and ``multishap.target.<name>`` says the
same of each target; the empty service name stays SERVING while the process runs
(liveness) until shutdown, when every name turns NOT_SERVING. ListTargets reads the last
probe instead of probing on the caller's time.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from grpc_health.v1 import health, health_pb2

from multishap.service.explainer.targets import Target

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def target_health_name(name: str) -> str:
    """The grpc.health.v1 service name that reports one target's reachability."""
    return f"multishap.target.{name}"


class ReadinessProbe:
    """Probes targets every ``interval`` seconds in a daemon thread; ``close()`` stops it."""

    def __init__(self, targets: Iterable[Target], service_name: str, interval: float, timeout: float = 1.0) -> None:
        self._targets = list(targets)
        self._service, self._interval, self._timeout = service_name, interval, timeout
        self._health: list[health.HealthServicer] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._targets)), thread_name_prefix="probe")
        self.probe_once()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)
        self._thread.start()

    def attach(self, servicer: health.HealthServicer) -> None:
        """Report the probe's results through ``servicer`` from now on."""
        self._health.append(servicer)
        self._publish()

    def probe_once(self) -> None:
        """Probe every target at once (bounded by the timeout) and publish the results."""
        list(self._pool.map(lambda t: t.probe(self._timeout), self._targets))
        self._publish()

    def _publish(self) -> None:
        ready = any(t.reachable for t in self._targets)
        for servicer in self._health:
            servicer.set(self._service, _SERVING if ready else _NOT_SERVING)
            for t in self._targets:
                servicer.set(target_health_name(t.name), _SERVING if t.reachable else _NOT_SERVING)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe_once()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)
