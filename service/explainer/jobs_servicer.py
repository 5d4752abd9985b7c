"""The Jobs servicer: submit, get, list, cancel and watch jobs stored in the job store.

A submitted request is checked exactly as the streaming call would check it (every item of a
dataset, before anything is stored), so a stored job never fails on its own fields. With token
authentication on, a caller sees and cancels only the jobs its identity submitted; anybody
else's job is NOT_FOUND, as an unknown id is.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import grpc

from multishap.service.explainer.job_messages import job_message, row_message
from multishap.service.explainer.job_runner import JobRunner
from multishap.service.explainer.servicer import ExplainerServicer
from multishap.service.jobstore import JobRecord, JobStore
from multishap.service.jobstore.store import TooManyPending
from multishap.service.rpc.auth import current_identity
from multishap.service.rpc.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable, shown
from multishap.service.rpc.request_checks import unprintable
from multishap.service.rpc.runtime import annotate
from multishap.v1 import explainer_pb2, jobs_pb2, jobs_pb2_grpc

JOBS_SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["Jobs"].full_name
MAX_NAME_CHARS = 200
MAX_ITEM_ID_CHARS = 200
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Rows a WatchJob reply sends per read of the store.
ROWS_PER_READ = 100
# WatchJob streams open at once (each holds an RPC thread), and of one identity; beyond: refused with a retry delay.
MAX_WATCHES = 16
MAX_WATCHES_PER_IDENTITY = 4
# Page tokens are what ListJobs writes: "CREATED/ID", CREATED a float's repr.
_PAGE_TOKEN = re.compile(r"([0-9]{1,12}\.[0-9]{1,20})/([0-9a-f]{32})")
_JOB_ID = re.compile(r"[0-9a-f]{32}")


class JobsServicer(jobs_pb2_grpc.JobsServicer):
    """The job API over ``store``; ``runner`` (this replica's workers) is woken by each submission."""

    def __init__(self, store: JobStore, explainer: ExplainerServicer, runner: Optional[JobRunner],
                 poll_s: float) -> None:
        self.store, self.explainer, self.runner, self.poll_s = store, explainer, runner, poll_s
        self._watching: dict[str, int] = {}
        self._lock = threading.Lock()
        self._draining = threading.Event()

    def SubmitJob(self, request: jobs_pb2.SubmitJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        if len(request.name) > MAX_NAME_CHARS:
            raise InvalidArgument(f"name has {len(request.name)} characters; at most {MAX_NAME_CHARS}")
        if unprintable(request.name):
            raise InvalidArgument("name must not contain control or formatting characters")
        spec = request.WhichOneof("spec")
        if spec == "explain":
            self.explainer.explain_work(request.explain)
            kind, target, requests = jobs_pb2.JOB_KIND_EXPLAIN, request.explain.target, [
                ("instance", request.explain.SerializeToString(deterministic=True))]
        elif spec == "faithfulness":
            self.explainer.faithfulness_work(request.faithfulness)
            kind, target, requests = jobs_pb2.JOB_KIND_FAITHFULNESS, request.faithfulness.target, [
                ("instance", request.faithfulness.SerializeToString(deterministic=True))]
        elif spec == "dataset":
            kind, target, requests = jobs_pb2.JOB_KIND_DATASET, request.dataset.explain.target, self._items(
                request.dataset)
        else:
            raise InvalidArgument("SubmitJob needs one of explain, faithfulness or dataset")
        owner, limit = current_identity(), self.explainer.limits.max_pending_job_items
        try:
            record = self.store.submit(kind, target, request.name, owner, requests, max_pending=limit)
        except TooManyPending as err:
            raise ResourceExhausted(f"{err.pending} job items of {'this identity' if owner else 'all callers'} are "
                                    f"waiting or running and this job adds {len(requests)}; at most {limit} "
                                    "(max_pending_job_items)", retry_after=30.0, limit="max_pending_job_items") from None
        annotate(job=record.id, items=record.items_total)
        if self.runner is not None:
            self.runner.wake()
        return job_message(self.store, record)

    def _items(self, dataset: jobs_pb2.DatasetRequest) -> list[tuple[str, bytes]]:
        """Each item's complete ExplainRequest, checked; InvalidArgument names the item that is wrong."""
        limit = self.explainer.limits.max_dataset_items
        if not dataset.items:
            raise InvalidArgument("a dataset job needs at least one item")
        if len(dataset.items) > limit:
            raise ResourceExhausted(f"the dataset has {len(dataset.items)} items; at most {limit} "
                                    "(max_dataset_items)", limit="max_dataset_items")
        seen: set[str] = set()
        requests = []
        for n, item in enumerate(dataset.items):
            if not item.id.strip() or len(item.id) > MAX_ITEM_ID_CHARS:
                raise InvalidArgument(f"item {n}: id must have 1 to {MAX_ITEM_ID_CHARS} characters, not all spaces")
            if unprintable(item.id):
                raise InvalidArgument(f"item {n}: id must not contain control or formatting characters")
            if item.id in seen:
                raise InvalidArgument(f"item {n}: id {shown(item.id)} is used twice")
            seen.add(item.id)
            request = explainer_pb2.ExplainRequest()
            request.CopyFrom(dataset.explain)
            request.instance.CopyFrom(item.instance)
            if item.HasField("check"):
                request.check.CopyFrom(item.check)
            if item.role:
                request.role = item.role
            try:
                self.explainer.explain_work(request)
            except (InvalidArgument, NotFound, ResourceExhausted) as err:
                named = copy.copy(err)  # keeps a refusal's limit and retry delay
                named.args = (f"item {shown(item.id)}: {err}",)
                raise named from None
            requests.append((item.id, request.SerializeToString(deterministic=True)))
        return requests

    def _job(self, job_id: str) -> JobRecord:
        """The caller's job ``job_id``; NOT_FOUND when there is none (or it is someone else's)."""
        if not _JOB_ID.fullmatch(job_id):
            raise InvalidArgument(f"job id {shown(job_id)} is not a job id (32 hexadecimal digits)")
        record = self.store.get(job_id)
        identity = current_identity()
        if record is None or (identity and record.owner != identity):
            raise NotFound(f"no job {job_id}")
        annotate(job=job_id)
        return record

    def GetJob(self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return job_message(self.store, self._job(request.id))

    def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        record = self._job(request.id)
        if not record.ended:
            record = self.store.cancel(record.id) or record
        return job_message(self.store, record)

    def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: grpc.ServicerContext) -> jobs_pb2.ListJobsResponse:
        if request.state not in jobs_pb2.JobState.values():
            raise InvalidArgument(f"state {request.state} is not a JobState")
        if request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size is {request.page_size}; at most {MAX_PAGE_SIZE}")
        size = request.page_size or DEFAULT_PAGE_SIZE
        identity = current_identity()
        found = self.store.list(request.state or None, size, _after(request.page_token), owner=identity or None)
        reply = jobs_pb2.ListJobsResponse(jobs=[job_message(self.store, r, with_result=False) for r in found])
        if len(found) == size:
            reply.next_page_token = f"{found[-1].created!r}/{found[-1].id}"
        return reply

    def WatchJob(self, request: jobs_pb2.WatchJobRequest, context: grpc.ServicerContext
                 ) -> Iterator[jobs_pb2.JobEvent]:
        record = self._job(request.id)
        with self._watch_slot(current_identity()):
            yield from self._watch(record, min(request.after_row, record.items_total), context)

    @contextmanager
    def _watch_slot(self, identity: str) -> Iterator[None]:
        """One of the MAX_WATCHES streams, at most MAX_WATCHES_PER_IDENTITY of them one identity's."""
        with self._lock:
            mine = self._watching.get(identity, 0)
            if self._draining.is_set():
                raise Unavailable("the explainer is stopping; watch again (another replica answers)")
            if sum(self._watching.values()) >= MAX_WATCHES or (identity and mine >= MAX_WATCHES_PER_IDENTITY):
                raise ResourceExhausted(f"too many jobs are being watched ({MAX_WATCHES} at most, "
                                        f"{MAX_WATCHES_PER_IDENTITY} per identity); try again shortly",
                                        retry_after=5.0, limit="max_watches")
            self._watching[identity] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                self._watching[identity] -= 1

    def drain(self) -> None:
        """The explainer is stopping: watches end with UNAVAILABLE now, so their clients move to another replica."""
        self._draining.set()

    def _watch(self, record: JobRecord, after: int, context: grpc.ServicerContext) -> Iterator[jobs_pb2.JobEvent]:
        """Rows after ``after``, a Job whenever the job changes, and the final Job once it has ended."""
        version = None
        while context.is_active():
            if self._draining.is_set():
                raise Unavailable("the explainer is stopping; watch again from the last row (another replica answers)")
            for row in self.store.rows(record.id, after, ROWS_PER_READ):
                after = row.row
                yield jobs_pb2.JobEvent(row=row_message(record.kind, row))
            record = self.store.get(record.id) or record
            if record.ended and after >= record.items_done:
                yield jobs_pb2.JobEvent(job=job_message(self.store, record))
                return
            if record.version != version:
                version = record.version
                yield jobs_pb2.JobEvent(job=job_message(self.store, record, with_result=False))
            if after < record.items_done:
                continue
            time.sleep(self.poll_s)


def _after(token: str) -> Optional[tuple[float, str]]:
    """The (created, id) a page token names; InvalidArgument when it is not one ListJobs gave."""
    if not token:
        return None
    found = _PAGE_TOKEN.fullmatch(token)
    if found is None:
        raise InvalidArgument("page_token is not one ListJobs returned")
    return float(found.group(1)), found.group(2)

