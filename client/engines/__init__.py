"""How an audit's explanations run: one work item per record and target (:class:`AuditTask`), the plain settings a
worker reaches the explainer with (:class:`Connection`), and :func:`drive`, the loop both engines share, which keeps
at most ``concurrency`` explanations in flight and at most ``per_target`` at any one target (so an endpoint's rate
limits and a GPU adapter's capacity hold). The engines differ only in where an explanation runs: ``local`` (threads
of this process, :mod:`.local`) or ``ray`` (Ray tasks, :mod:`.ray`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Hashable, Iterable, Mapping, Optional, Sequence, TypeVar

from multishap.service import defaults
from multishap.service.rpc.tls import TLSArg

from ..dataset import explain_options
from ..fanout import INSTANCE_ERRORS
from ..images import content_bytes
from ..sdk import ExplainerClient

ENGINES = ("local", "ray")
AUDIT_OUT = "audit.parquet"      # the results directory
CONCURRENCY = 8                  # explanations in flight at once, all targets together
MAX_IN_FLIGHT_PER_TARGET = 4     # explanations in flight at any one target

Outcome = dict[str, Any]  # {"explanation": Explanation.to_dict()} or {"error": sentence}
Handle = TypeVar("Handle", bound=Hashable)


@dataclass(frozen=True)
class Connection:
    """Where the explainer is and how to call it, as picklable values: a gRPC channel cannot travel to another
    process, so each worker opens its own client from these (``tls`` and ``token`` as ExplainerClient takes them;
    TLS files are read where the client opens, so Ray workers on other machines need them too)."""

    address: str
    timeout: Optional[float] = None
    max_retries: int = defaults.MAX_RETRIES
    tls: TLSArg = None
    token: Optional[str] = field(default=None, repr=False)

    def open(self) -> ExplainerClient:
        """A new blocking client to the explainer."""
        return ExplainerClient(self.address, timeout=self.timeout, max_retries=self.max_retries, tls=self.tls,
                               token=self.token)


@dataclass(frozen=True)
class AuditTask:
    """One explanation of an audit: ``record`` at ``target``, stored under (id, target, key)."""

    id: str
    target: str
    key: str
    record: Mapping[str, Any]
    options: Mapping[str, Any]

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.id, self.target, self.key)

    def arguments(self) -> dict[str, Any]:
        """explain()'s arguments, the image as the bytes its request carries."""
        return dict(image=content_bytes(self.record["image"]), text=self.record["text"], target=self.target,
                    **explain_options(self.record, self.options))

    def portable(self) -> "AuditTask":
        """This task with its image read into bytes here, so a worker on another machine needs no shared files."""
        return replace(self, record={**self.record, "image": content_bytes(self.record["image"])})


def explain_task(client: ExplainerClient, task: AuditTask) -> Outcome:
    """The task's explanation as a dict, or the sentence it failed with (one instance's failure is its row)."""
    try:
        return {"explanation": client.explain(**task.arguments()).to_dict()}
    except INSTANCE_ERRORS as err:
        return {"error": str(err)}


def drive(tasks: Iterable[AuditTask], settle: Callable[[AuditTask, Outcome], None], *, concurrency: int,
          per_target: int, start: Callable[[AuditTask], Handle],
          finished: Callable[[Sequence[Handle]], list[tuple[Handle, Outcome]]]) -> None:
    """Run every task: ``start`` one (a handle to it), ``finished`` waits until at least one of those in flight is
    done and gives their outcomes; each is handed to ``settle`` at once. Targets take turns (the one that started a
    task last goes to the back), each in its tasks' order, within the bounds."""
    waiting: dict[str, deque[AuditTask]] = {}
    for task in tasks:
        waiting.setdefault(task.target, deque()).append(task)
    busy = dict.fromkeys(waiting, 0)
    running: dict[Handle, AuditTask] = {}
    while waiting or running:
        startable = [t for t in waiting if busy[t] < per_target]
        while startable and len(running) < concurrency:
            target = startable.pop(0)
            queue = waiting.pop(target)  # to the back of the turn order
            task = queue.popleft()
            running[start(task)] = task
            busy[target] += 1
            if queue:
                waiting[target] = queue
                if busy[target] < per_target:
                    startable.append(target)
        for handle, outcome in finished(list(running)):
            task = running.pop(handle)
            busy[task.target] -= 1
            settle(task, outcome)
