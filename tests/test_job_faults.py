"""Jobs under faults: an explainer killed with SIGKILL mid-dataset resumes by itself with nothing lost or redone,
two replicas on one PostgreSQL never run an item twice, and an expired lease moves an item to another replica."""

import signal
import threading
import time

import pytest

from multishap.client import ExplainerClient
from multishap.service.jobstore.store import open_store
from multishap.service.math.metrics import dataset_metrics
from multishap.service.rpc.config import JobSettings
from images import png
from servers import TEXT, SlowBackend, adapters, cli_process, explainer, free_port, wait_serving

ITEMS = 8


def records(n: int) -> list[dict]:
    return [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "parameters": {"family": "mixed", "seed": str(k)}}
            for k in range(n)]


OPTIONS = dict(grid=(3, 3), budget=600, seed=5)


def uninterrupted_ratios(address: str, n: int) -> dict[str, float]:
    """Each item's synergy ratio from the streaming call, the reference a job must reproduce."""
    with ExplainerClient(address, timeout=120) as client:
        return {r["id"]: client.explain(r["image"], r["text"], target="syn", parameters=r["parameters"],
                                        **OPTIONS).metrics.synergy_ratio for r in records(n)}


def serve(config, store_url: str, port: int, log):
    process = cli_process("serve", "--config", str(config), "--port", str(port), "--metrics-port", "-1",
                          "--job-store", store_url, log=log)
    wait_serving(f"127.0.0.1:{port}", process)
    return process


def test_a_killed_explainer_resumes_its_dataset_job_with_nothing_lost_or_redone(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with adapters(SlowBackend(0.03)) as (a,):
        config = tmp_path / "explainer.toml"
        config.write_text(f'[targets.syn]\naddresses = ["{a.address}"]\nmax_batch = 64\n\n'
                          "[jobs]\nworkers = 2\nlease_s = 2.0\npoll_s = 0.1\n")
        port = free_port()
        with open(tmp_path / "serve.log", "w") as log:
            first = serve(config, store_url, port, log)
            watcher = ExplainerClient(f"127.0.0.1:{port}", timeout=60)
            with ExplainerClient(f"127.0.0.1:{port}", timeout=60) as client:
                job = client.submit_dataset(records(ITEMS), target="syn", **OPTIONS)
                watched: list = []
                watching = threading.Thread(target=lambda: watched.extend(watcher.job(job.id).watch()))
                watching.start()
                while job.status().items_done < 2:
                    time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait(30)
            store = open_store(store_url)
            before = {row.item_id for row in store.rows(job.id)}
            assert 2 <= len(before) < ITEMS
            second = serve(config, store_url, port, log)
            try:
                with ExplainerClient(f"127.0.0.1:{port}", timeout=120) as client:
                    report = client.job(job.id).result()
                    status = client.job(job.id).status()
                watching.join(60)
            finally:
                watcher.close()
                second.terminate()
                second.wait(60)
        attempts = store.attempts(job.id)
        rows = store.rows(job.id)
        store.close()
        expected = uninterrupted_ratios_with(a.address)
    assert status.state == "succeeded" and [r.row for r in rows] == list(range(1, ITEMS + 1))
    assert [r.row for r in watched] == list(range(1, ITEMS + 1))    # one watch, across the kill and the restart
    assert sorted(r.item_id for r in rows) == sorted(expected) and len(report.rows) == ITEMS
    assert all(attempts[item][0] == 1 for item in before)           # finished before the kill: never redone
    assert sum(n for n, _ in attempts.values()) <= ITEMS + 2        # at most the two in flight ran twice
    got = {row["id"]: row["synergy_ratio"] for row in report.rows}
    assert got == expected
    reference = dataset_metrics([expected[k] for k in sorted(expected)])
    assert status.msr == pytest.approx(reference.msr, rel=1e-12) and status.sdr == reference.sdr


def uninterrupted_ratios_with(adapter_address: str) -> dict[str, float]:
    with explainer({"syn": [adapter_address]}, jobs=JobSettings(workers=0)) as (e, _, _):
        return uninterrupted_ratios(e.address, ITEMS)


def test_two_replicas_on_one_postgresql_never_run_an_item_twice(postgres_store_url):
    job_store_url = postgres_store_url
    settings = JobSettings(job_store_url, workers=3, lease_s=5.0, poll_s=0.02)
    with adapters(SlowBackend(0.02)) as (a,), \
            explainer({"syn": [a.address]}, jobs=settings) as (one, _, _), \
            explainer({"syn": [a.address]}, jobs=settings) as (two, _, _):
        with ExplainerClient(one.address, timeout=120) as client:
            job = client.submit_dataset(records(12), target="syn", **OPTIONS)
        with ExplainerClient(two.address, timeout=120) as client:
            report = client.job(job.id).result()
    store = open_store(job_store_url)
    attempts = store.attempts(job.id)
    rows = store.rows(job.id)
    store.close()
    assert len(report.rows) == 12 and [r.row for r in rows] == list(range(1, 13))
    assert all(n == 1 for n, _ in attempts.values())
    assert len({runner for _, runner in attempts.values()}) == 2    # both replicas took items


def test_an_expired_lease_moves_the_item_and_the_late_holder_stores_nothing(job_store_url):
    store = open_store(job_store_url)
    try:
        job = store.submit(3, "syn", "", "", [("a", b"request")])
        first = store.claim("replica-1", lease_s=1.0)
        assert store.claim("replica-2", lease_s=1.0) is None        # held
        time.sleep(1.1)
        second = store.claim("replica-2", lease_s=30.0)
        assert second is not None and second.attempts == 2
        assert store.renew(first, "replica-1", 30.0) == "lost"      # the first holder learns it lost the item
        assert store.finish(first, "replica-1", b"late", None) is None
        assert store.finish(second, "replica-2", b"result", None, 0.25) == 1
        [row] = store.rows(job.id)
        assert row.result == b"result" and store.get(job.id).state == 3
    finally:
        store.close()


def test_a_claim_is_fenced_from_a_later_claim_of_the_same_replica(job_store_url):
    store = open_store(job_store_url)
    try:
        job = store.submit(3, "syn", "", "", [("a", b"request")])
        stalled = store.claim("replica-1", lease_s=0.5)
        time.sleep(0.6)
        again = store.claim("replica-1", lease_s=30.0)             # another worker of the same replica
        assert store.renew(stalled, "replica-1", 30.0) == "lost"
        store.release(stalled, "replica-1")                         # must not re-queue the item under `again`
        assert store.finish(stalled, "replica-1", b"late", None) is None
        assert store.finish(again, "replica-1", b"result", None) == 1 and store.rows(job.id)[0].result == b"result"
    finally:
        store.close()


def test_a_stopping_replica_gives_its_running_items_back_at_once(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = JobSettings(store_url, workers=1, lease_s=60.0, poll_s=0.02)
    with adapters(SlowBackend(0.03)) as (a,):
        with explainer({"syn": [a.address]}, jobs=settings) as (e, _, _):
            with ExplainerClient(e.address, timeout=60) as client:
                job = client.submit_dataset(records(3), target="syn", **OPTIONS)
                while job.status().state != "running":
                    time.sleep(0.02)
        with explainer({"syn": [a.address]}, jobs=settings) as (e, _, _):
            with ExplainerClient(e.address, timeout=60) as client:
                report = client.job(job.id).result()    # no 60 s wait for a lease to expire
    assert len(report.rows) == 3


def test_an_item_whose_target_is_down_waits_for_it_rather_than_failing(tmp_path):
    port = free_port()
    settings = JobSettings(f"sqlite:///{tmp_path / 'jobs.db'}", workers=1, lease_s=5.0, poll_s=0.02)
    with explainer({"syn": [f"127.0.0.1:{port}"]}, jobs=settings, timeout_s=1.0) as (e, _, _):
        with ExplainerClient(e.address, timeout=60) as client:
            job = client.submit_explain(png(), TEXT, target="syn", **OPTIONS)
            time.sleep(1.5)
            status = job.status()
            job.cancel()
    assert status.state == "running" and status.items_done == 0


def test_an_external_runner_replaces_an_error_row_with_a_later_success(job_store_url):
    store = open_store(job_store_url)
    try:
        job = store.submit(3, "syn", "audit-1", "", [("a", b"request"), ("b", b"request")], runner="audit",
                           keys=["ka", "kb"])
        assert store.claim("replica-1", lease_s=30.0) is None       # replicas never claim an external job
        assert store.record(job.id, "a", None, "UNAVAILABLE: down") == 1
        assert store.record(job.id, "b", b"ok-b", None, 0.5) == 2
        ended = store.get(job.id)
        assert store.record(job.id, "a", b"ok-a", None, 0.25) == 1  # a resumed audit redid it
        after = store.get(job.id)
        assert (ended.state, ended.items_failed) == (3, 1) and (after.state, after.items_failed) == (3, 0)
        assert store.keys(job.id) == {"a": ("ka", True), "b": ("kb", True)}
        assert store.record(job.id, "b", b"again", None) is None    # a success is never replaced
    finally:
        store.close()


def test_a_replica_claims_only_items_of_its_own_targets(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with adapters(SlowBackend(0.0)) as (a,), \
            explainer({"syn": [a.address]}, jobs=JobSettings(url, workers=2, lease_s=5.0, poll_s=0.02)) as (one, _, _), \
            explainer({"other": [a.address]}, jobs=JobSettings(url, workers=0)) as (two, _, _):
        with ExplainerClient(two.address, timeout=60) as client:
            job = client.submit_dataset(records(2), target="other", **OPTIONS)
            time.sleep(0.5)
            status = job.status()
    assert status.state == "queued" and status.items_done == 0
