"""The ``local`` engine: the audit's explanations on a thread pool of this process, all through one client."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence

from . import AuditTask, Connection, Outcome, drive, explain_task


def run_local(tasks: Sequence[AuditTask], connection: Connection, settle: Callable[[AuditTask, Outcome], None], *,
              concurrency: int, max_in_flight_per_target: int) -> None:
    """Explain ``tasks`` on ``concurrency`` threads sharing one ExplainerClient, handing each outcome to ``settle``
    as it comes."""
    with connection.open() as client, ThreadPoolExecutor(max_workers=concurrency) as pool:
        def start(task: AuditTask) -> Future:
            return pool.submit(explain_task, client, task)

        def finished(running: Sequence[Future]) -> list[tuple[Future, Outcome]]:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            return [(future, future.result()) for future in done]

        drive(tasks, settle, concurrency=concurrency, per_target=max_in_flight_per_target, start=start,
              finished=finished)
