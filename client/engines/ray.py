"""The ``ray`` engine: each explanation of an audit is a Ray task (retried by Ray when its worker dies), which
opens its own client to the explainer; the driver bounds the tasks in flight, overall and per target, and settles
each as it finishes, so a driver that dies loses nothing that finished (a resumed run skips it)."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

from . import AuditTask, Connection, Outcome, drive, explain_task

TASK_NAME = "multishap.audit.explain"  # what a worker running one shows in its process title: ray::<TASK_NAME>
MAX_RETRIES = 3                        # Ray's re-runs of a task whose worker died


def import_ray() -> ModuleType:
    """The ray module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("the ray engine needs the ray package, which is not installed: "
                          "pip install 'multishap[ray]'", name="ray") from err
    return ray


def explain_in_worker(connection: Connection, task: AuditTask) -> Outcome:
    """One task's body, in a Ray worker: a client of its own, one explanation, the outcome as plain data."""
    with connection.open() as client:
        return explain_task(client, task)


def run_ray(tasks: Sequence[AuditTask], connection: Connection, settle: Callable[[AuditTask, Outcome], None], *,
            concurrency: int, max_in_flight_per_target: int, ray_address: Optional[str] = None) -> None:
    """Explain ``tasks`` as Ray tasks on the cluster this process has joined, else the one at ``ray_address`` (or
    the environment's RAY_ADDRESS, as in a RayJob), else a local one of ``concurrency`` CPUs on 127.0.0.1 without
    a dashboard, started here and shut down after; each task is settled as it finishes.

    A task whose worker died more than :data:`MAX_RETRIES` times becomes an error row; an exception raised
    by the task's code (a bug) stops the audit.
    """
    ray = import_ray()
    connection.open().close()  # bad TLS files or a token bound for plaintext: refused here, once, not per task
    started = not ray.is_initialized()
    if started:
        ray_address = ray_address or os.environ.get("RAY_ADDRESS")
        if ray_address:
            ray.init(address=ray_address)
        else:
            ray.init(num_cpus=concurrency, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        remote = ray.remote(max_retries=MAX_RETRIES)(explain_in_worker).options(name=TASK_NAME)
        connection_ref = ray.put(connection)

        def start(task: AuditTask) -> Any:
            return remote.remote(connection_ref, task.portable())

        def finished(running: Sequence[Any]) -> list[tuple[Any, Outcome]]:
            ready, _ = ray.wait(list(running), num_returns=1)
            return [(ref, _outcome(ray, ref)) for ref in ready]

        drive(tasks, settle, concurrency=concurrency, per_target=max_in_flight_per_target, start=start,
              finished=finished)
    finally:
        if started:
            ray.shutdown()


def _outcome(ray: ModuleType, ref: Any) -> Outcome:
    """A finished task's outcome; a task lost to worker or node failures, after Ray's retries, is an error row."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError:
        raise
    except ray.exceptions.RayError as err:
        return {"error": f"the Ray task failed after {MAX_RETRIES} retries ({type(err).__name__})"}
