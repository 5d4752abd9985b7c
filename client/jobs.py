"""Server-side jobs from the SDK: submit requests as jobs, then watch, fetch, list and cancel them.

    job = client.submit_dataset(records, target="clip", budget=2000)
    for row in job.watch():        # rows as they are stored; survives a disconnect
        print(row.item_id, row.explanation.metrics.synergy_ratio)
    job.result().msr, job.to_dataframe()

A job lives in the explainer's job store, not in this process: ``client.job(job_id)`` finds it
again from any client, on any replica, a week later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Iterator, Mapping, Optional, Union

import grpc

from multishap.service import defaults
from multishap.v1 import jobs_pb2

from .dataset import DatasetReport, check_options, dataset_report, explain_options, instance_id
from .errors import ExplainerError
from .explanation import Explanation, FaithfulnessReport, Usage
from .requests import explain_call, faithfulness_call

if TYPE_CHECKING:
    import pandas

STATES = {"queued": jobs_pb2.JOB_STATE_QUEUED, "running": jobs_pb2.JOB_STATE_RUNNING,
          "succeeded": jobs_pb2.JOB_STATE_SUCCEEDED, "failed": jobs_pb2.JOB_STATE_FAILED,
          "cancelled": jobs_pb2.JOB_STATE_CANCELLED}
KINDS = {jobs_pb2.JOB_KIND_EXPLAIN: "explain", jobs_pb2.JOB_KIND_FAITHFULNESS: "faithfulness",
         jobs_pb2.JOB_KIND_DATASET: "dataset"}
ENDED = ("succeeded", "failed", "cancelled")
# Codes after which watch() reconnects (and resumes after the last row it saw) rather than failing; a refusal
# with a retry delay (too many watches) is waited out too.
RECONNECT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
RECONNECT_DELAY_S = 1.0
RECONNECT_ATTEMPTS = 60      # in a row without an event: the explainer is gone, not restarting


def state_name(value: int) -> str:
    """The SDK's name of a JobState ("queued", "running", ...)."""
    return next((name for name, v in STATES.items() if v == value), "unspecified")


@dataclass(frozen=True)
class JobStatus:
    """A job as the store has it now: state, counters, times (Unix seconds; 0 until they happen), the summary over
    the rows stored so far (MSR, SDR) and the usage they cost."""

    id: str
    kind: str
    state: str
    name: str
    target: str
    owner: str
    items: int
    items_done: int
    items_failed: int
    created: float
    started: float
    finished: float
    error: str
    msr: float
    sdr: float
    usage: Usage = field(default_factory=Usage)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @classmethod
    def from_proto(cls, msg: jobs_pb2.Job) -> "JobStatus":
        return cls(id=msg.id, kind=KINDS.get(msg.kind, "unspecified"), state=state_name(msg.state), name=msg.name,
                   target=msg.target, owner=msg.owner, items=msg.items, items_done=msg.items_done,
                   items_failed=msg.items_failed, created=msg.created_unix, started=msg.started_unix,
                   finished=msg.finished_unix, error=msg.error, msr=msg.summary.msr, sdr=msg.summary.sdr,
                   usage=Usage.from_proto(msg.usage))


@dataclass(frozen=True)
class JobRow:
    """One stored item of a job: its explanation (or faithfulness report), or its error; ``attempts`` is how many
    times it was started (more than 1 only when a replica died while running it)."""

    row: int
    item_id: str
    explanation: Optional[Explanation] = None
    faithfulness: Optional[FaithfulnessReport] = None
    error: Optional[str] = None
    attempts: int = 1

    @classmethod
    def from_proto(cls, msg: jobs_pb2.JobRow) -> "JobRow":
        outcome = msg.WhichOneof("outcome")
        return cls(row=msg.row, item_id=msg.item_id, attempts=msg.attempts,
                   explanation=Explanation.from_proto(msg.explanation) if outcome == "explanation" else None,
                   faithfulness=FaithfulnessReport.from_proto(msg.faithfulness) if outcome == "faithfulness" else None,
                   error=msg.error if outcome == "error" else None)


class _Watch:
    """One watch's state, transport aside: the last row seen, what each event means, when to reconnect."""

    def __init__(self, job_id: str, after_row: int) -> None:
        self.job_id, self.after_row, self.failures = job_id, after_row, 0
        self.ended = False

    def request(self) -> jobs_pb2.WatchJobRequest:
        return jobs_pb2.WatchJobRequest(id=self.job_id, after_row=self.after_row)

    def receive(self, event: jobs_pb2.JobEvent) -> Union[JobRow, JobStatus]:
        self.failures = 0
        if event.HasField("row"):
            self.after_row = event.row.row
            return JobRow.from_proto(event.row)
        status = JobStatus.from_proto(event.job)
        self.ended = status.ended
        return status

    def reconnect_delay(self, err: grpc.RpcError) -> float:
        """Seconds to wait before watching again after ``err``; the error itself when it is not worth retrying."""
        self.failures += 1
        error = ExplainerError.from_rpc(err)
        if (err.code() not in RECONNECT and error.retry_after is None) or self.failures >= RECONNECT_ATTEMPTS:
            raise error from None
        return min(error.retry_after or RECONNECT_DELAY_S, defaults.MAX_RETRY_DELAY_S)


class _Bar:
    """The optional progress bar of a watch: rows stored of the job's items."""

    def __init__(self, progress: bool) -> None:
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=0, unit="instance", desc="job")

    def show(self, status: JobStatus) -> None:
        if self.bar is not None:
            self.bar.total, self.bar.n = status.items, status.items_done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def job_result(job_id: str, rows: list[JobRow], status: JobStatus) -> Union[Explanation, FaithfulnessReport,
                                                                            DatasetReport]:
    """What an ended job gave: a dataset job's DatasetReport, else its one row's result; ExplainerError when a
    one-item job has none."""
    if status.kind == "dataset":
        return job_report(rows, status)
    if status.state != "succeeded" or not rows or rows[0].error is not None:
        reason = status.error or (rows[0].error if rows else f"the job was {status.state}")
        raise ExplainerError("FAILED_PRECONDITION", f"job {job_id} has no result: {reason}")
    return rows[0].explanation if status.kind == "explain" else rows[0].faithfulness


class _Handle:
    """What both handles hold: the job's id, the Jobs stub and the timeout of each unary call."""

    def __init__(self, stub: Any, job_id: str, timeout: Optional[float] = None) -> None:
        self.id, self._stub, self._timeout = job_id, stub, timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


class JobHandle(_Handle):
    """A job of the explainer's store, reached through ``stub`` (a JobsStub); cheap to make from an id."""

    def status(self) -> JobStatus:
        return JobStatus.from_proto(self._call("GetJob", jobs_pb2.GetJobRequest(id=self.id)))

    def cancel(self) -> JobStatus:
        """Stop the job: items not finished are not run; stored rows are kept."""
        return JobStatus.from_proto(self._call("CancelJob", jobs_pb2.CancelJobRequest(id=self.id)))

    def watch(self, after_row: int = 0, progress: bool = False) -> Iterator[JobRow]:
        """Each row stored after ``after_row`` as it lands, until the job ends. A dropped connection (the
        replica restarting, a network blip) is reconnected, from the last row seen; ``progress`` draws a bar."""
        watch, bar = _Watch(self.id, after_row), _Bar(progress)
        try:
            while not watch.ended:
                try:
                    for event in self._stub.WatchJob(watch.request()):
                        item = watch.receive(event)
                        if isinstance(item, JobRow):
                            yield item
                        else:
                            bar.show(item)
                    return
                except grpc.RpcError as err:
                    time.sleep(watch.reconnect_delay(err))
        finally:
            bar.close()

    def rows(self) -> list[JobRow]:
        """Every row, after waiting for the job to end."""
        return list(self.watch())

    def result(self) -> Union[Explanation, FaithfulnessReport, DatasetReport]:
        """Wait for the job to end; an explain job's Explanation, a faithfulness job's FaithfulnessReport, or a
        dataset job's DatasetReport (MSR, SDR, rows and failures). A failed or cancelled one-item job raises
        :class:`ExplainerError` with its error."""
        rows = self.rows()
        return job_result(self.id, rows, self.status())

    def to_dataframe(self) -> "pandas.DataFrame":
        """The result as a DataFrame, once the job has ended (a dataset job: one row per instance)."""
        return self.result().to_dataframe()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None


class AsyncJobHandle(_Handle):
    """:class:`JobHandle` for asyncio (an aio JobsStub): the same methods, awaited; ``watch`` is an async iterator."""

    async def status(self) -> JobStatus:
        return JobStatus.from_proto(await self._call("GetJob", jobs_pb2.GetJobRequest(id=self.id)))

    async def cancel(self) -> JobStatus:
        """Stop the job: items not finished are not run; stored rows are kept."""
        return JobStatus.from_proto(await self._call("CancelJob", jobs_pb2.CancelJobRequest(id=self.id)))

    async def watch(self, after_row: int = 0, progress: bool = False) -> AsyncIterator[JobRow]:
        """Each row stored after ``after_row`` as it lands, until the job ends (see :meth:`JobHandle.watch`)."""
        watch, bar = _Watch(self.id, after_row), _Bar(progress)
        try:
            while not watch.ended:
                try:
                    async for event in self._stub.WatchJob(watch.request()):
                        item = watch.receive(event)
                        if isinstance(item, JobRow):
                            yield item
                        else:
                            bar.show(item)
                    return
                except grpc.RpcError as err:
                    await asyncio.sleep(watch.reconnect_delay(err))
        finally:
            bar.close()

    async def rows(self) -> list[JobRow]:
        """Every row, after waiting for the job to end."""
        return [row async for row in self.watch()]

    async def result(self) -> Union[Explanation, FaithfulnessReport, DatasetReport]:
        """Wait for the job to end; its result (see :meth:`JobHandle.result`)."""
        rows = await self.rows()
        return job_result(self.id, rows, await self.status())

    async def to_dataframe(self) -> "pandas.DataFrame":
        """The result as a DataFrame, once the job has ended."""
        return (await self.result()).to_dataframe()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None


class JobListing:
    """One jobs() call, transport aside: the pages asked for, until ``limit`` jobs or the last page."""

    def __init__(self, state: Optional[str], limit: int) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}; got {state!r}")
        self.limit, self.found, self.done = limit, [], False
        self.request = jobs_pb2.ListJobsRequest(state=STATES.get(state, 0), page_size=min(limit, 500))

    def wants_more(self) -> bool:
        return not self.done and len(self.found) < self.limit

    def receive(self, reply: jobs_pb2.ListJobsResponse) -> None:
        self.found += [JobStatus.from_proto(j) for j in reply.jobs]
        self.request.page_token = reply.next_page_token
        self.done = not reply.next_page_token


def job_report(rows: list[JobRow], status: JobStatus) -> DatasetReport:
    """The DatasetReport of a dataset job's rows, with MSR, SDR and usage as the server summarised them."""
    done = [(r.item_id, {"explanation": r.explanation.to_dict()}) for r in rows if r.explanation]
    failed = [{"id": r.item_id, "error": r.error or ""} for r in rows if r.explanation is None]
    return replace(dataset_report(done, failed), msr=status.msr, sdr=status.sdr, usage=status.usage)


def dataset_request(instances: Iterable[Mapping[str, Any]], target: str,
                    options: Mapping[str, Any]) -> jobs_pb2.DatasetRequest:
    """A DatasetRequest of ``instances`` (the records explain_dataset takes) explained with ``options``."""
    check_options(options)
    per_call = {k: v for k, v in options.items() if k != "timeout"}
    request = jobs_pb2.DatasetRequest()
    for record in instances:
        call = explain_call(record["image"], record["text"], target=target, **explain_options(record, per_call))
        if not request.HasField("explain"):
            request.explain.CopyFrom(call.request)
            for per_item in ("instance", "check", "role"):
                request.explain.ClearField(per_item)
        item = request.items.add(id=instance_id(record), instance=call.request.instance, role=call.request.role)
        if call.request.HasField("check"):
            item.check.CopyFrom(call.request.check)
    return request


def explain_job_request(*args: Any, **options: Any) -> jobs_pb2.SubmitJobRequest:
    """A SubmitJobRequest for one explanation (explain()'s arguments)."""
    return jobs_pb2.SubmitJobRequest(explain=explain_call(*args, **options).request)


def faithfulness_job_request(*args: Any, **options: Any) -> jobs_pb2.SubmitJobRequest:
    """A SubmitJobRequest for one faithfulness evaluation (faithfulness()'s arguments)."""
    return jobs_pb2.SubmitJobRequest(faithfulness=faithfulness_call(*args, **options).request)
