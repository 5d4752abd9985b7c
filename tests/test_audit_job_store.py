"""An audit's rows in the job store (`multishap audit --job-store URL --name NAME`): one job per target that the
explainer's Jobs API serves like any job, continued by a resumed audit, never claimed by the explainer's workers."""

import pytest

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import ExplainerClient
from multishap.client.audit import run_audit
from multishap.service.jobstore.store import open_store
from multishap.service.rpc.config import JobSettings
from servers import TEXT, adapters, explainer

OPTIONS = dict(grid=(2, 2), budget=200, seed=1)


def records(n: int) -> list[dict]:
    return [{"id": f"a{k}", "image": png(seed=k), "text": TEXT, "parameters": {"family": "mixed", "seed": str(k)}}
            for k in range(n)]


@pytest.fixture
def service(job_store_url):
    with adapters(SyntheticBackend(), SyntheticBackend()) as (a, b), \
            explainer({"one": [a.address], "two": [b.address]},
                      jobs=JobSettings(job_store_url, 2, 5.0, 0.05)) as (e, _, _):
        yield e.address, job_store_url


def test_an_audit_stores_one_job_per_target_that_the_jobs_api_serves(service, tmp_path):
    address, url = service
    report = run_audit(records(3), address=address, targets=["one", "two"], out=tmp_path / "audit", progress=False,
                       job_store=url, job_name="audit-1", **OPTIONS)
    again = run_audit(records(3), address=address, targets=["one", "two"], out=tmp_path / "audit", progress=False,
                      job_store=url, job_name="audit-1", **OPTIONS)
    with ExplainerClient(address, timeout=60) as client:
        stored = {target: client.job(job_id).result() for target, job_id in report.jobs.items()}
        statuses = {target: client.job(job_id).status() for target, job_id in report.jobs.items()}
    assert set(report.jobs) == {"one", "two"} and again.jobs == report.jobs and again.skipped == 6
    for target, result in stored.items():
        audited = {row["id"]: row["synergy_ratio"] for row in report.rows if row["target"] == target}
        assert {row["id"]: row["synergy_ratio"] for row in result.rows} == audited
        assert statuses[target].state == "succeeded" and statuses[target].name == "audit-1"
        assert result.msr == pytest.approx(report.targets[target].msr, rel=1e-12)
    store = open_store(url)
    try:
        attempts = store.attempts(report.jobs["one"])
    finally:
        store.close()
    assert all(n == 1 and runner == "" for n, runner in attempts.values())   # recorded by the audit, not claimed


def test_other_options_make_a_new_job_and_a_name_is_required(service, tmp_path):
    address, url = service
    first = run_audit(records(2), address=address, targets=["one"], out=tmp_path / "a", progress=False,
                      job_store=url, job_name="audit-2", **OPTIONS)
    other = run_audit(records(2), address=address, targets=["one"], out=tmp_path / "b", progress=False,
                      job_store=url, job_name="audit-2", **{**OPTIONS, "seed": 2})
    assert first.jobs["one"] != other.jobs["one"]
    with pytest.raises(ValueError, match="needs a name"):
        run_audit(records(1), address=address, targets=["one"], out=tmp_path / "c", progress=False, job_store=url,
                  **OPTIONS)
