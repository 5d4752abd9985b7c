"""Runs stored job items on this replica: each worker claims an item, keeps its lease, explains it, stores its row.

A worker claims only items of targets this replica has. An item runs through the same work as a
streamed Explain or Faithfulness call (the servicer's ``explain_work``/``faithfulness_work``), so
a job's row is bit for bit what the stream would have answered. A heartbeat renews the lease
every third of ``lease_s``; when the lease is lost (or not renewed for ``lease_s``) or the job is
cancelled, the work is cancelled and nothing is stored. A target that is down (UNAVAILABLE) gives
the item back to the queue, claimable again after a delay that doubles with each start, up to
``MAX_ATTEMPTS`` starts; any other error is the item's row. On a graceful stop, items still
running after the grace period are cancelled and given back at once; after a kill their leases
simply expire. Job workers run beside the streaming calls' admission slots, not inside them:
``[jobs] workers`` is their own bound.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from typing import Callable, Collection

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge

from multishap.service.explainer.streaming import Work
from multishap.service.explainer.targets import CallControl
from multishap.service.jobstore import ItemClaim, JobStore
from multishap.service.jobstore.store import reason as store_reason
from multishap.service.math.interrupt import interruptible
from multishap.service.rpc.config import JobSettings
from multishap.service.rpc.errors import Cancelled
from multishap.service.rpc.runtime import status_of
from multishap.v1 import explainer_pb2, jobs_pb2

log = logging.getLogger("multishap.jobs")

# Starts of one item before a target that stays UNAVAILABLE makes the outage its row; the delays before
# each retry (2, 4, 8, 16, 32 s) let an adapter that reloads a model come back.
MAX_ATTEMPTS = 6
RETRY_DELAY_S = 2.0
# A worker logs a failing store at most this often.
LOG_EVERY_S = 30.0

WorkFor = Callable[[int, bytes], Work]


class JobRunner:
    """``settings.workers`` threads that run the store's items until :meth:`stop`."""

    def __init__(self, store: JobStore, work_for: WorkFor, settings: JobSettings, registry: CollectorRegistry,
                 targets: Collection[str]) -> None:
        self.store, self.work_for, self.settings, self.targets = store, work_for, settings, frozenset(targets)
        self._started = False
        self._last_warning = 0.0
        self.owner = f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._running: dict[int, CallControl] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, name=f"job-worker-{n}", daemon=True)
                         for n in range(settings.workers)]
        self.items = Counter("multishap_job_items", "Job items this replica ran, by outcome "
                             "(stored, failed, retried, lost, cancelled)", ["outcome"], registry=registry)
        Gauge("multishap_job_items_running", "Job items this replica is running", registry=registry
              ).set_function(lambda: len(self._running))

    def start(self) -> None:
        self._started = True
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """A job was submitted: idle workers look at the store now rather than at their next poll."""
        with self._wake:
            self._wake.notify_all()

    def stop(self, grace: float = 0.0) -> None:
        """Claim nothing more; give running items ``grace`` seconds, then cancel them (they go back to the queue)."""
        self._stopping.set()
        self.wake()
        if not self._started:
            return
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            running = list(self._running.values())
        for control in running:
            control.cancel()
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                claim = self.store.claim(self.owner, self.settings.lease_s, self.targets)
                if claim is not None:
                    self._run(claim)
                    continue
            except Exception as err:  # noqa: BLE001 - a database hiccup must not end the worker
                self._warn("the job store failed; the worker goes on", err)
            with self._wake:
                self._wake.wait(self.settings.poll_s)

    def _warn(self, message: str, err: Exception) -> None:
        """Log a store failure at most every LOG_EVERY_S, with no host, user or URL in it."""
        now = time.monotonic()
        if now - self._last_warning >= LOG_EVERY_S:
            self._last_warning = now
            log.warning("%s: %s", message, store_reason(err))

    def _run(self, claim: ItemClaim) -> None:
        """Run one claimed item under its lease and store its row (or give it back)."""
        control = CallControl(None)
        lost = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(claim, control, lost), daemon=True,
                                     name="job-lease")
        key = threading.get_ident()
        with self._lock:
            self._running[key] = control
        heartbeat.start()
        try:
            outcome = self._outcome(claim, control)
        finally:
            with self._lock:
                self._running.pop(key, None)
            control.cancel()
            heartbeat.join()
        self._settle(claim, outcome, lost.is_set())

    def _outcome(self, claim: ItemClaim, control: CallControl) -> tuple[str, object]:
        """("result", message), ("error", (code, sentence)) or ("cancelled", None)."""
        try:
            work = self.work_for(claim.kind, claim.request)
            with interruptible(control.check):
                return "result", work(control, lambda *_: None)
        except Exception as exc:  # noqa: BLE001 - every error is the item's outcome
            if control.cancelled or isinstance(exc, Cancelled):
                return "cancelled", None
            return "error", status_of(exc)

    def _settle(self, claim: ItemClaim, outcome: tuple[str, object], lost: bool) -> None:
        kind, value = outcome
        if lost:
            self.items.labels(outcome="lost").inc()
            return
        if kind == "cancelled":
            self.store.release(claim, self.owner)
            self.items.labels(outcome="cancelled").inc()
            return
        if kind == "error":
            code, sentence = value  # type: ignore[misc]
            if code == grpc.StatusCode.UNAVAILABLE and (claim.attempts < MAX_ATTEMPTS or self._stopping.is_set()):
                delay = 0.0 if self._stopping.is_set() else RETRY_DELAY_S * 2 ** (claim.attempts - 1)
                self.store.release(claim, self.owner, delay)
                self.items.labels(outcome="retried").inc()
                return
            row = self.store.finish(claim, self.owner, None, f"{code.name}: {sentence}")
            self.items.labels(outcome="failed" if row else "lost").inc()
            return
        result = value
        ratio = result.metrics.synergy_ratio if isinstance(result, explainer_pb2.Explanation) else None
        row = self.store.finish(claim, self.owner, result.SerializeToString(deterministic=True), None, ratio,
                                result.usage.SerializeToString(deterministic=True))
        self.items.labels(outcome="stored" if row else "lost").inc()

    def _heartbeat(self, claim: ItemClaim, control: CallControl, lost: threading.Event) -> None:
        """Renew the lease until the work ends; cancel it when the lease is lost or the job cancelled."""
        period, renewed = self.settings.lease_s / 3, time.monotonic()
        while not control.wait_cancelled(period):
            try:
                held = self.store.renew(claim, self.owner, self.settings.lease_s)
            except Exception as err:  # noqa: BLE001 - keep trying while the lease lasts
                self._warn("could not renew a job item's lease", err)
                held = "kept" if time.monotonic() - renewed < self.settings.lease_s else "lost"
            else:
                renewed = time.monotonic() if held == "kept" else renewed
            if held != "kept":
                if held == "lost":
                    lost.set()
                control.cancel()
                return


def work_for(explainer) -> WorkFor:
    """How the runner turns a stored request into work: through ``explainer``'s own request checks."""
    def build(kind: int, request: bytes) -> Work:
        if kind == jobs_pb2.JOB_KIND_FAITHFULNESS:
            return explainer.faithfulness_work(explainer_pb2.FaithfulnessRequest.FromString(request))
        return explainer.explain_work(explainer_pb2.ExplainRequest.FromString(request))

    return build
