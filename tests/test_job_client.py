"""Jobs from the SDK (submit_dataset's handle: watch, result, to_dataframe) and the CLI (multishap jobs ...),
against a real explainer with a SQLite job store."""

import json

import numpy as np
import pytest

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import ExplainerClient
from multishap.client.cli import main
from multishap.service.rpc.config import JobSettings
from servers import TEXT, adapters, explainer

OPTIONS = dict(grid=(2, 2), budget=300, seed=3)


def records(n: int) -> list[dict]:
    return [{"id": f"r{k}", "image": png(seed=k), "text": TEXT, "parameters": {"family": "mixed", "seed": str(k)}}
            for k in range(n)]


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    store = tmp_path_factory.mktemp("jobs") / "jobs.db"
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]},
                                                          jobs=JobSettings(f"sqlite:///{store}", 2, 5.0, 0.05)) as (e, _, _):
        yield e.address


def test_a_dataset_job_reports_what_explain_dataset_reports(address, tmp_path):
    with ExplainerClient(address, timeout=120) as client:
        job = client.submit_dataset(records(3), target="syn", name="audit", **OPTIONS)
        rows = list(job.watch())
        report = job.result()
        local = client.explain_dataset(records(3), target="syn", out=tmp_path / "local.jsonl", progress=False,
                                       **OPTIONS)
        frame = job.to_dataframe()
        listed = client.jobs(state="succeeded")
    assert sorted(r.item_id for r in rows) == ["r0", "r1", "r2"] and all(r.attempts == 1 for r in rows)
    by_id = {r["id"]: r["synergy_ratio"] for r in local.rows}
    assert {r["id"]: r["synergy_ratio"] for r in report.rows} == by_id
    assert report.msr == pytest.approx(local.msr, rel=1e-12) and report.sdr == local.sdr
    assert sorted(frame["id"]) == ["r0", "r1", "r2"] and job.id in [s.id for s in listed]


def test_an_explain_job_gives_the_explanation_explain_gives(address):
    with ExplainerClient(address, timeout=120) as client:
        job = client.submit_explain(png(seed=9), TEXT, target="syn", parameters={"family": "mixed"}, **OPTIONS)
        got = job.result()
        expected = client.explain(png(seed=9), TEXT, target="syn", parameters={"family": "mixed"}, **OPTIONS)
        status = job.status()
    assert np.array_equal(got.phi, expected.phi) and status.kind == "explain" and status.state == "succeeded"


def test_a_failed_one_item_job_raises_its_error_and_bad_states_are_refused(address):
    with ExplainerClient(address, timeout=120) as client:
        job = client.submit_explain(png(), TEXT, target="syn", parameters={"family": "no-such-family"}, **OPTIONS)
        with pytest.raises(Exception, match="has no result: INVALID_ARGUMENT"):
            job.result()
        assert job.status().state == "failed"
        with pytest.raises(ValueError, match="state must be one of"):
            client.jobs(state="done")


def test_the_cli_submits_watches_gets_lists_and_cancels(address, tmp_path, capsys):
    manifest = tmp_path / "manifest.jsonl"
    for k in range(2):
        (tmp_path / f"{k}.png").write_bytes(png(seed=k))
    manifest.write_text("".join(json.dumps({"id": f"m{k}", "image": f"{k}.png", "text": TEXT,
                                            "parameters": {"family": "mixed"}}) + "\n" for k in range(2)))
    common = ["--address", address, "--timeout", "120"]
    assert main(["jobs", "submit", str(manifest), "--target", "syn", "--grid", "2x2", "--budget", "300",
                 "--name", "cli", *common]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["jobs", "watch", job_id, *common]) == 0
    watched = capsys.readouterr().out
    assert watched.count("synergy ratio") == 2 and f"job {job_id} (dataset, syn): succeeded, 2/2 rows" in watched
    assert main(["jobs", "get", job_id, "--out", str(tmp_path / "rows.jsonl"), *common]) == 0
    lines = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ["m0", "m1"] and all("explanation" in line for line in lines)
    assert main(["jobs", "list", "--state", "succeeded", *common]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "cancel", job_id, *common]) == 0
    assert "succeeded" in capsys.readouterr().out       # a finished job stays as it ended
    assert main(["jobs", "get", "f" * 32, *common]) == 1
    assert "NOT_FOUND: no job" in capsys.readouterr().err


def test_with_tokens_a_job_belongs_to_the_identity_that_submitted_it(tmp_path):
    from multishap.client import ExplainerError
    from multishap.service.explainer import serve_explainer
    from multishap.service.rpc.auth import token_digest
    from multishap.service.rpc.config import ExplainerConfig, TargetConfig

    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {token_digest('alice-secret-0123456789')}\nbob {token_digest('bob-secret-0123456789')}\n")
    with adapters(SyntheticBackend()) as (a,):
        config = ExplainerConfig(targets={"syn": TargetConfig("syn", (a.address,))},
                                 jobs=JobSettings(f"sqlite:///{tmp_path / 'jobs.db'}", 1, 5.0, 0.05))
        running, servicer = serve_explainer(config, tokens=tokens)
        try:
            with ExplainerClient(running.address, timeout=60, token="alice-secret-0123456789") as alice, \
                    ExplainerClient(running.address, timeout=60, token="bob-secret-0123456789") as bob:
                job = alice.submit_dataset(records(1), target="syn", **OPTIONS)
                job.result()
                mine, theirs = alice.jobs(), bob.jobs()
                with pytest.raises(ExplainerError, match="NOT_FOUND"):
                    bob.job(job.id).cancel()
        finally:
            running.stop(None)
            servicer.close()
    assert [s.owner for s in mine] == ["alice"] and theirs == []


def test_the_async_client_submits_watches_and_lists_jobs(address):
    import asyncio

    from multishap.client import AsyncExplainerClient

    async def run():
        async with AsyncExplainerClient(address, timeout=120) as client:
            job = await client.submit_dataset(records(2), target="syn", **OPTIONS)
            rows = [row async for row in job.watch()]
            report = await job.result()
            listed = await client.jobs(state="succeeded")
            return job.id, rows, report, listed

    job_id, rows, report, listed = asyncio.run(run())
    with ExplainerClient(address, timeout=120) as client:
        expected = client.job(job_id).result()
    assert sorted(r.item_id for r in rows) == ["r0", "r1"] and report.rows == expected.rows
    assert job_id in [s.id for s in listed]
