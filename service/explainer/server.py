"""Start the Explainer server: bind first, then build the servicer, and clean up on a failed start."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

from prometheus_client import CollectorRegistry

from multishap.service.explainer.job_runner import JobRunner, work_for
from multishap.service.explainer.jobs_servicer import JOBS_SERVICE, MAX_WATCHES, JobsServicer
from multishap.service.explainer.servicer import EXPLAINER_SERVICE, SPARE_RPC_THREADS, ExplainerServicer
from multishap.service.jobstore import open_store
from multishap.service.rpc.config import ExplainerConfig
from multishap.service.rpc.auth import authenticator
from multishap.service.rpc.runtime import MAX_CONNECTION_AGE_S, RunningServer, bind_server
from multishap.service.rpc.tls import ServerTLS
from multishap.v1 import explainer_pb2_grpc, jobs_pb2_grpc


def serve_explainer(
    config: ExplainerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
    *,
    tls: Optional[ServerTLS] = None,
    tokens: Optional[Path] = None,
    metrics_host: str = "127.0.0.1",
    health_port: Optional[int] = None,
    max_connection_age_s: float = MAX_CONNECTION_AGE_S,
) -> tuple[RunningServer, ExplainerServicer]:
    """Start the Explainer server; port 0 picks a free port. The RPC thread pool holds every
    explanation running or waiting, plus spares for health checks and ListTargets. With ``tokens`` (a
    tokens file, see :mod:`multishap.service.rpc.auth`) every call but health checks and reflection
    needs a bearer token, and each identity's ``max_in_flight`` bounds its Explain and Faithfulness
    calls; ``tls``, ``metrics_host``, ``health_port`` and ``max_connection_age_s`` are :func:`bind_server`'s."""
    registry = CollectorRegistry()
    limits = config.limits
    workers = (limits.max_concurrent_explanations + limits.max_queued_explanations + SPARE_RPC_THREADS
               + MAX_WATCHES)
    metered = [f"/{EXPLAINER_SERVICE}/Explain", f"/{EXPLAINER_SERVICE}/Faithfulness"]
    interceptors = [] if tokens is None else [authenticator(tokens, metered)]
    bound = bind_server(registry, host, port, metrics_port, workers, limits.max_message_bytes, tls=tls,
                        metrics_host=metrics_host, health_port=health_port, max_connection_age_s=max_connection_age_s,
                        interceptors=interceptors)
    servicer = None
    try:
        servicer = ExplainerServicer(config, registry)
        jobs = _job_service(config, servicer, registry)

        def register(server) -> None:
            explainer_pb2_grpc.add_ExplainerServicer_to_server(servicer, server)
            jobs_pb2_grpc.add_JobsServicer_to_server(jobs, server)

        running = bound.start(register, [EXPLAINER_SERVICE, JOBS_SERVICE])
    except BaseException:
        if servicer is not None:
            servicer.close()
        bound.close()
        raise
    servicer.readiness.attach(running.health)
    if jobs.runner is not None:
        jobs.runner.start()
    return running, servicer


def _job_service(config: ExplainerConfig, servicer: ExplainerServicer, registry: CollectorRegistry) -> JobsServicer:
    """The Jobs servicer over the configured store, with this replica's workers; the explainer's shutdown ends
    the watches, stops the workers (in the same grace period as its RPCs) and then closes the store."""
    store = open_store(config.jobs.store)
    runner = (JobRunner(store, work_for(servicer), config.jobs, registry, servicer.targets)
              if config.jobs.workers else None)
    stopping: list[threading.Thread] = []
    jobs = JobsServicer(store, servicer, runner, config.jobs.poll_s)

    def drain() -> None:
        jobs.drain()
        if runner is not None:
            stopping.append(threading.Thread(target=runner.stop, args=(config.server.grace_s,), daemon=True))
            stopping[-1].start()

    def close() -> None:
        if runner is not None:
            if not stopping:
                runner.stop()
            for thread in stopping:
                thread.join()
        store.close()

    servicer.on_shutdown(drain, close)
    return jobs
