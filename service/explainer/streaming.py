"""Long RPCs as event streams: wait for a slot, run the work in a thread, stream its progress, then its result.

When the client cancels or its deadline passes, gRPC's termination callback cancels the
call's :class:`CallControl`; the work stops at its next checkpoint
(:mod:`multishap.service.math.interrupt`), the Score calls in flight are cancelled, and the
slot is released. Prometheus sees the calls running and waiting, and their wall time.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator

import grpc
from prometheus_client import CollectorRegistry, Gauge, Histogram

from multishap.service.explainer.admission import Admission
from multishap.service.explainer.targets import CallControl
from multishap.service.math.interrupt import interruptible
from multishap.service.rpc.runtime import annotate
from multishap.v1 import explainer_pb2

Progress = Callable[..., None]
Work = Callable[[CallControl, Progress], Any]


class EventStreams:
    """Runs Explain and Faithfulness work under admission, as streams of progress events and one result."""

    def __init__(self, admission: Admission, registry: CollectorRegistry) -> None:
        self.admission = admission
        self.duration = Histogram(
            "multishap_explain_seconds", "Wall time of Explain and Faithfulness calls", ["rpc"],
            registry=registry, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.in_progress = Gauge("multishap_explanations_in_progress", "Explain and Faithfulness calls running",
                                 registry=registry)
        self.queued = Gauge("multishap_explanations_queued", "Explain and Faithfulness calls waiting for a slot",
                            registry=registry)
        self.queued.set_function(lambda: self.admission.waiting)

    def events(self, rpc: str, context: grpc.ServicerContext, work: Work, event_type: type,
               result_field: str) -> Iterator:
        """The RPC's stream: ``event_type(progress=...)`` events, then one carrying ``work``'s result."""
        start = time.perf_counter()
        try:
            for item in self._admitted(context, work):
                if isinstance(item, explainer_pb2.Progress):
                    yield event_type(progress=item)
                else:
                    annotate(evaluations=item.evaluations)
                    yield event_type(**{result_field: item})
        finally:
            self.duration.labels(rpc=rpc).observe(time.perf_counter() - start)

    def _admitted(self, context: grpc.ServicerContext, work: Work) -> Iterator:
        """Run ``work`` once a slot is free, under the call's deadline and cancellation."""
        remaining = context.time_remaining()
        control = CallControl(None if remaining is None else time.monotonic() + remaining)
        if not context.add_callback(control.cancel):
            control.cancel()  # the RPC has already ended
        with self.admission.slot(control.deadline, lambda: control.cancelled):
            yield from self._run(control, work)

    def _run(self, control: CallControl, work: Work) -> Iterator:
        """``work`` in a worker thread: its progress as Progress messages, then its result (or its error)."""
        events: queue.Queue = queue.Queue()
        start = time.monotonic()

        def run() -> None:
            try:
                with interruptible(control.check):
                    result = work(control, lambda *report: events.put(("progress", *report)))
                events.put(("done", result))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the RPC thread
                events.put(("error", exc))

        worker = threading.Thread(target=run, name="explain", daemon=True)
        self.in_progress.inc()
        worker.start()
        try:
            while True:
                kind, *payload = events.get()
                if kind == "progress":
                    yield _progress(time.monotonic() - start, *payload)
                elif kind == "done":
                    yield payload[0]
                    return
                else:
                    raise payload[0]
        finally:
            control.cancel()
            worker.join()
            self.in_progress.dec()


def _progress(elapsed: float, done: int, total: int, cost: float = 0.0, cost_unit: str = "",
              budget_unit: int = explainer_pb2.BUDGET_UNIT_COALITIONS) -> explainer_pb2.Progress:
    """A progress event; the ETA extrapolates what the budget counts (coalitions, or cost)."""
    spent = cost if budget_unit == explainer_pb2.BUDGET_UNIT_COST else done
    eta = elapsed * (total - spent) / spent if spent else 0.0
    return explainer_pb2.Progress(evaluations=done, budget=total, elapsed_seconds=elapsed, eta_seconds=max(eta, 0.0),
                                  cost=cost, cost_unit=cost_unit, budget_unit=budget_unit)
