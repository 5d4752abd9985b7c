"""The Jobs service on real servers, against SQLite and a real PostgreSQL: submit, watch, get, list, cancel.

A job's rows are what the streaming call answers for the same request (same seed), jobs outlive
the explainer that ran them, and every field is checked before anything is stored.
"""

import time

import grpc
import numpy as np
import pytest

from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.jobstore.store import open_store
from multishap.service.math.metrics import dataset_metrics
from multishap.service.rpc.config import JobSettings, Limits
from multishap.v1 import explainer_pb2, jobs_pb2, jobs_pb2_grpc
from servers import SlowBackend, adapters, explainer, instance

def explain_request(**overrides) -> explainer_pb2.ExplainRequest:
    fields = dict(target="syn", budget=200, seed=7)
    fields.update(overrides)
    return explainer_pb2.ExplainRequest(**fields)


def dataset(n: int, **overrides) -> jobs_pb2.DatasetRequest:
    return jobs_pb2.DatasetRequest(explain=explain_request(**overrides), items=[
        jobs_pb2.DatasetItem(id=f"i{k}", instance=instance("mixed", str(k))) for k in range(n)])


def watch(stub, job_id: str, after_row: int = 0) -> tuple[list, jobs_pb2.Job]:
    rows, last = [], None
    for event in stub.WatchJob(jobs_pb2.WatchJobRequest(id=job_id, after_row=after_row), timeout=120):
        if event.HasField("row"):
            rows.append(event.row)
        else:
            last = event.job
    return rows, last


def streamed(stub, request) -> explainer_pb2.Explanation:
    return [e.explanation for e in stub.Explain(request, timeout=60) if e.HasField("explanation")][0]


@pytest.fixture
def service(job_store_url):
    yield from _service(job_store_url)


@pytest.fixture
def sqlite_service(tmp_path):
    """The service on a SQLite store only, for checks that no store can change (request validation)."""
    yield from _service(f"sqlite:///{tmp_path / 'jobs.db'}")


def _service(job_store_url):
    settings = JobSettings(job_store_url, 2, 5.0, 0.05)
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}, jobs=settings,
                                                          limits=Limits(max_dataset_items=20,
                                                                        max_pending_job_items=15)) as (e, stub, _):
        channel = grpc.insecure_channel(e.address)
        yield stub, jobs_pb2_grpc.JobsStub(channel), job_store_url, a.address
        channel.close()


def test_an_explain_job_answers_what_the_stream_answers(service):
    stub, jobs, _, _ = service
    request = explain_request(instance=instance("mixed", "2"))
    job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(explain=request, name="one"), timeout=30)
    assert job.state == jobs_pb2.JOB_STATE_QUEUED and job.kind == jobs_pb2.JOB_KIND_EXPLAIN and job.items == 1
    rows, final = watch(jobs, job.id)
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED and final.name == "one" and len(rows) == 1
    expected = streamed(stub, request)
    for got in (rows[0].explanation, jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=30).explanation):
        assert list(got.phi.values) == list(expected.phi.values) and got.metrics == expected.metrics


def test_a_dataset_job_stores_one_row_per_item_and_its_msr(service):
    stub, jobs, _, _ = service
    request = jobs_pb2.SubmitJobRequest(dataset=dataset(5))
    job = jobs.SubmitJob(request, timeout=30)
    rows, final = watch(jobs, job.id)
    assert [r.row for r in rows] == [1, 2, 3, 4, 5] and sorted(r.item_id for r in rows) == [f"i{k}" for k in range(5)]
    assert all(r.attempts == 1 and r.HasField("explanation") for r in rows)
    ratios = [streamed(stub, explain_request(instance=instance("mixed", r.item_id[1:]))).metrics.synergy_ratio
              for r in rows]
    assert [r.explanation.metrics.synergy_ratio for r in rows] == ratios
    expected = dataset_metrics(ratios)
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED and final.items_done == 5 and final.items_failed == 0
    assert final.summary.instances == 5 and np.isclose(final.summary.msr, expected.msr)
    assert final.summary.sdr == expected.sdr
    again, _ = watch(jobs, job.id, after_row=3)
    assert [r.row for r in again] == [4, 5] and [r.item_id for r in again] == [r.item_id for r in rows[3:]]


def test_a_finished_job_outlives_its_explainer(job_store_url):
    settings = JobSettings(job_store_url, 2, 5.0, 0.05)
    with adapters(SyntheticBackend()) as (a,):
        with explainer({"syn": [a.address]}, jobs=settings) as (e, _, _):
            with grpc.insecure_channel(e.address) as channel:
                jobs = jobs_pb2_grpc.JobsStub(channel)
                job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(dataset=dataset(3)), timeout=30)
                first, _ = watch(jobs, job.id)
        with explainer({"syn": [a.address]}, jobs=JobSettings(job_store_url, 0)) as (e, _, _):
            with grpc.insecure_channel(e.address) as channel:
                jobs = jobs_pb2_grpc.JobsStub(channel)
                later, final = watch(jobs, job.id)
                listed = jobs.ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_SUCCEEDED), timeout=30)
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED and later == first
    assert [j.id for j in listed.jobs] == [job.id]


def test_cancel_stops_the_items_not_started_and_keeps_the_rows(job_store_url):
    settings = JobSettings(job_store_url, 1, 1.5, 0.05)
    with adapters(SlowBackend(0.05)) as (a,), explainer({"syn": [a.address]}, jobs=settings) as (e, _, servicer):
        with grpc.insecure_channel(e.address) as channel:
            jobs = jobs_pb2_grpc.JobsStub(channel)
            job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(dataset=dataset(8, budget=2000)), timeout=30)
            for event in jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=120):
                if event.HasField("row"):
                    break
            cancelled = jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), timeout=30)
            rows, final = watch(jobs, job.id)
            time.sleep(1.0)    # past the lease renewal at which the running item learns of the cancel
            again = jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), timeout=30)
    assert cancelled.state == final.state == again.state == jobs_pb2.JOB_STATE_CANCELLED
    assert 1 <= len(rows) < 8 and final.items_done == len(rows) == again.items_done and final.finished_unix > 0


def test_list_pages_newest_first_and_filters_by_state(service):
    _, jobs, _, _ = service
    ids = [jobs.SubmitJob(jobs_pb2.SubmitJobRequest(explain=explain_request(instance=instance()), name=f"j{k}"),
                          timeout=30).id for k in range(3)]
    first = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=2), timeout=30)
    second = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=2, page_token=first.next_page_token), timeout=30)
    assert [j.id for j in first.jobs] + [j.id for j in second.jobs] == ids[::-1] and not second.next_page_token
    for job_id in ids:
        watch(jobs, job_id)
    done = jobs.ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_SUCCEEDED), timeout=30)
    queued = jobs.ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_QUEUED), timeout=30)
    assert len(done.jobs) == 3 and not queued.jobs and not done.jobs[0].HasField("explanation")


@pytest.mark.parametrize("request_, code, said", [
    (jobs_pb2.SubmitJobRequest(), "INVALID_ARGUMENT", "needs one of explain, faithfulness or dataset"),
    (jobs_pb2.SubmitJobRequest(explain=explain_request(target="nope", instance=instance())), "NOT_FOUND",
     "unknown target"),
    (jobs_pb2.SubmitJobRequest(dataset=jobs_pb2.DatasetRequest(explain=explain_request())), "INVALID_ARGUMENT",
     "at least one item"),
    (jobs_pb2.SubmitJobRequest(dataset=dataset(21)), "RESOURCE_EXHAUSTED", "at most 20 (max_dataset_items)"),
    (jobs_pb2.SubmitJobRequest(dataset=jobs_pb2.DatasetRequest(explain=explain_request(), items=[
        jobs_pb2.DatasetItem(id="a", instance=instance()), jobs_pb2.DatasetItem(id="a", instance=instance())])),
     "INVALID_ARGUMENT", "item 1: id 'a' is used twice"),
    (jobs_pb2.SubmitJobRequest(dataset=jobs_pb2.DatasetRequest(explain=explain_request(), items=[
        jobs_pb2.DatasetItem(id="ok", instance=instance()),
        jobs_pb2.DatasetItem(id="big", instance=instance(grid={"rows": 99, "cols": 2}))])),
     "RESOURCE_EXHAUSTED", "item 'big': "),
    (jobs_pb2.SubmitJobRequest(name="x" * 201, explain=explain_request(instance=instance())), "INVALID_ARGUMENT",
     "at most 200"),
    (jobs_pb2.SubmitJobRequest(name="a\x00b", explain=explain_request(instance=instance())), "INVALID_ARGUMENT",
     "control or formatting"),
    (jobs_pb2.SubmitJobRequest(name="\x1b[31m\u202e", explain=explain_request(instance=instance())),
     "INVALID_ARGUMENT", "control or formatting"),
    (jobs_pb2.SubmitJobRequest(dataset=jobs_pb2.DatasetRequest(explain=explain_request(), items=[
        jobs_pb2.DatasetItem(id="a\x00", instance=instance())])), "INVALID_ARGUMENT", "item 0: id must not contain"),
    (jobs_pb2.SubmitJobRequest(dataset=jobs_pb2.DatasetRequest(explain=explain_request(), items=[
        jobs_pb2.DatasetItem(id=" \n\t", instance=instance())])), "INVALID_ARGUMENT", "not all spaces"),
    (jobs_pb2.SubmitJobRequest(dataset=dataset(16)), "RESOURCE_EXHAUSTED", "at most 15 (max_pending_job_items)"),
])
def test_submissions_are_checked_before_anything_is_stored(sqlite_service, request_, code, said):
    _, jobs, _, _ = sqlite_service
    with pytest.raises(grpc.RpcError) as err:
        jobs.SubmitJob(request_, timeout=30)
    assert err.value.code().name == code and said in err.value.details()
    assert not jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=30).jobs


@pytest.mark.parametrize("call, code, said", [
    (lambda j: j.GetJob(jobs_pb2.GetJobRequest(id="0" * 32), timeout=30), "NOT_FOUND", "no job"),
    (lambda j: j.GetJob(jobs_pb2.GetJobRequest(id="../etc"), timeout=30), "INVALID_ARGUMENT", "not a job id"),
    (lambda j: j.CancelJob(jobs_pb2.CancelJobRequest(id="f" * 32), timeout=30), "NOT_FOUND", "no job"),
    (lambda j: list(j.WatchJob(jobs_pb2.WatchJobRequest(id="x" * 500), timeout=30)), "INVALID_ARGUMENT",
     "not a job id"),
    (lambda j: j.ListJobs(jobs_pb2.ListJobsRequest(page_size=501), timeout=30), "INVALID_ARGUMENT", "at most 500"),
    (lambda j: j.ListJobs(jobs_pb2.ListJobsRequest(page_token="garbage"), timeout=30), "INVALID_ARGUMENT",
     "page_token"),
    (lambda j: j.ListJobs(jobs_pb2.ListJobsRequest(page_token="nan/" + "a" * 32), timeout=30), "INVALID_ARGUMENT",
     "page_token"),
    (lambda j: j.ListJobs(jobs_pb2.ListJobsRequest(page_token="1e999/" + "a" * 32), timeout=30), "INVALID_ARGUMENT",
     "page_token"),
    (lambda j: j.ListJobs(jobs_pb2.ListJobsRequest(state=77), timeout=30), "INVALID_ARGUMENT", "not a JobState"),
])
def test_reads_of_unknown_or_malformed_jobs_are_refused(sqlite_service, call, code, said):
    _, jobs, _, _ = sqlite_service
    with pytest.raises(grpc.RpcError) as err:
        call(jobs)
    assert err.value.code().name == code and said in err.value.details()


def test_the_migrated_schema_is_the_declared_one(job_store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from multishap.service.jobstore.store import schema_revision
    from multishap.service.jobstore.tables import metadata

    store = open_store(job_store_url)
    try:
        with store.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
        assert differences == [] and schema_revision(store.engine) == "0002"
        open_store(job_store_url).close()  # migrating again is a no-op
    finally:
        store.close()


def test_a_store_made_by_the_first_schema_is_migrated_with_its_jobs_kept(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from multishap.service.jobstore.store import MIGRATIONS, schema_revision

    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql("INSERT INTO jobs VALUES ('%s', 3, 3, 'old', 'syn', '', 1, 1, 0, 1.0, 1.0, 2.0, '', 2)"
                             % ("a" * 32))
    engine.dispose()
    store = open_store(url)
    try:
        job = store.get("a" * 32)
        assert schema_revision(store.engine) == "0002" and job.name == "old" and job.runner == ""
    finally:
        store.close()


def test_a_watch_far_past_the_last_row_just_ends(service):
    _, jobs, _, _ = service
    job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(explain=explain_request(instance=instance())), timeout=30)
    rows, final = watch(jobs, job.id, after_row=2**63)
    assert rows == [] and final.state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_a_stopping_explainer_ends_its_watches_so_clients_move_on(tmp_path):
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}, jobs=JobSettings(
            f"sqlite:///{tmp_path / 'jobs.db'}", 0)) as (e, _, servicer):
        with grpc.insecure_channel(e.address) as channel:
            jobs = jobs_pb2_grpc.JobsStub(channel)
            job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(explain=explain_request(instance=instance())), timeout=30)
            stream = jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=30)
            next(stream)        # the job, queued: nobody runs it here
            servicer.drain()
            with pytest.raises(grpc.RpcError) as err:
                list(stream)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "stopping" in err.value.details()


def test_watches_are_bounded_and_a_closed_one_frees_its_slot(tmp_path):
    from multishap.service.explainer.jobs_servicer import MAX_WATCHES

    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}, jobs=JobSettings(
            f"sqlite:///{tmp_path / 'jobs.db'}", 0)) as (e, _, _):
        with grpc.insecure_channel(e.address) as channel:
            jobs = jobs_pb2_grpc.JobsStub(channel)
            job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(explain=explain_request(instance=instance())), timeout=30)
            streams = [jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=30) for _ in range(MAX_WATCHES)]
            for stream in streams:
                next(stream)
            with pytest.raises(grpc.RpcError) as err:
                next(jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=30))
            streams[0].cancel()
            deadline = time.monotonic() + 10
            while True:
                try:
                    next(jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=30))
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "a cancelled watch never gave its slot back"
                    time.sleep(0.1)
            for stream in streams[1:]:
                stream.cancel()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many jobs are being watched" in \
        err.value.details()
