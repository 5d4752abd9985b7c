"""Job records of the store as Job and JobRow messages (summary, usage and result included)."""

from __future__ import annotations

from multishap.service.jobstore import JobRecord, JobStore, RowRecord
from multishap.service.math.metrics import dataset_summary
from multishap.service.rpc.convert import add_usage
from multishap.v1 import common_pb2, jobs_pb2


def job_message(store: JobStore, record: JobRecord, with_result: bool = True) -> jobs_pb2.Job:
    """The Job message of ``record``: its counters, the summary and usage over its rows, and (for a finished
    one-item job, when asked) its result."""
    ratios, usages = store.summary(record.id)
    job = jobs_pb2.Job(
        id=record.id, kind=record.kind, state=record.state, name=record.name, target=record.target,
        owner=record.owner, items=record.items_total, items_done=record.items_done,
        items_failed=record.items_failed, created_unix=record.created, started_unix=record.started,
        finished_unix=record.finished, error=record.error, usage=_summed(usages),
    )
    metrics = dataset_summary(ratios)
    job.summary.CopyFrom(jobs_pb2.DatasetSummary(instances=metrics.count, msr=metrics.msr, sdr=metrics.sdr))
    if with_result and record.state == jobs_pb2.JOB_STATE_SUCCEEDED and record.kind != jobs_pb2.JOB_KIND_DATASET:
        rows = store.rows(record.id, 0, 1)
        if rows and rows[0].result is not None:
            if record.kind == jobs_pb2.JOB_KIND_FAITHFULNESS:
                job.faithfulness.ParseFromString(rows[0].result)
            else:
                job.explanation.ParseFromString(rows[0].result)
    return job


def row_message(kind: int, row: RowRecord) -> jobs_pb2.JobRow:
    """One stored row as a JobRow: its explanation (or faithfulness result), or its error."""
    message = jobs_pb2.JobRow(row=row.row, item_id=row.item_id, attempts=row.attempts)
    if row.result is None:
        message.error = row.error or ""
    elif kind == jobs_pb2.JOB_KIND_FAITHFULNESS:
        message.faithfulness.ParseFromString(row.result)
    else:
        message.explanation.ParseFromString(row.result)
    return message


def _summed(usages: list[bytes]) -> common_pb2.Usage:
    total = common_pb2.Usage()
    for raw in usages:
        add_usage(total, common_pb2.Usage.FromString(raw))
    return total
