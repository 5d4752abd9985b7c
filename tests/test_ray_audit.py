"""Dataset audits (run_audit, ``multishap audit``) on a real local Ray and on threads, against real loopback servers:
Ray's Phi equals the local engine's bit for bit, a worker killed mid-audit loses nothing, a resumed run explains
nothing new, the per-target bound holds, and the CLI runs end to end."""

import os

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage report leaves the machine

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from images import png
from multishap.client import ExplainerClient
from multishap.client.audit import run_audit
from multishap.client.cli import main
from multishap.client.engines.parquet import ParquetSink, read_audit, result_row
from multishap.client.engines.ray import TASK_NAME
from multishap.service.math.games import FAMILIES
from servers import TEXT, SlowBackend, adapters, explainer

OPTIONS = dict(budget=200, seed=5)
RECORDS = [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "grid": (2, 2),
            "parameters": {"family": FAMILIES[k % len(FAMILIES)], "seed": str(k)}} for k in range(8)]


class Gauge(SlowBackend):
    """The synthetic game, ``delay`` seconds per Score request, counting requests and the most in flight at once."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self._lock = threading.Lock()
        self.requests = self.now = self.most = 0

    def forward(self, instance, masks):
        with self._lock:
            self.requests += 1
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return super().forward(instance, masks)
        finally:
            with self._lock:
                self.now -= 1


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def service():
    """An explainer with targets a, b (fast) and slow (30 ms per Score request); each explanation has one Score
    request in flight at a time, so the requests in flight at an adapter are the explanations in flight there."""
    gauges = {"a": Gauge(0.0), "b": Gauge(0.0), "slow": Gauge(0.03)}
    with adapters(*gauges.values()) as running:
        addresses = {name: [r.address] for name, r in zip(gauges, running)}
        with explainer(addresses, max_batch=32, max_in_flight=1) as (e, _, _):
            yield e.address, gauges


@pytest.fixture(scope="module")
def local(service, tmp_path_factory):
    """The reference: every record at every target on the local engine; its Phi, and the Score requests that
    took at each target."""
    address, gauges = service
    out = tmp_path_factory.mktemp("local") / "audit"
    report = run_audit(RECORDS, address=address, targets=["a", "b", "slow"], out=out, progress=False, **OPTIONS)
    assert not report.failures
    return phis(out), {name: gauge.requests for name, gauge in gauges.items()}


def phis(out: Path) -> dict[tuple[str, str], np.ndarray]:
    """Phi of each (id, target) in the audit directory, each stored exactly once and without error."""
    table = read_audit(out).to_pylist()
    slots = [(row["id"], row["target"], row["key"]) for row in table]
    assert len(slots) == len(set(slots)), "a row is stored twice"
    assert all(row["error"] is None for row in table), [row["error"] for row in table]
    return {(row["id"], row["target"]): np.asarray(row["phi"]).reshape(row["phi_rows"], row["phi_cols"])
            for row in table}


def assert_same(got: dict, want: dict, targets: list[str]) -> None:
    assert sorted(got) == sorted(k for k in want if k[1] in targets)
    for slot, phi in got.items():
        assert np.array_equal(phi, want[slot]), slot


@pytest.mark.parametrize("arguments, message", [
    (dict(targets=[]), "targets must be a non-empty list"),
    (dict(targets="a"), "targets must be a non-empty list"),
    (dict(targets=["a", "a"]), "must not name a target twice"),
    (dict(engine="spark"), "unknown engine 'spark'; choose one of local, ray"),
    (dict(concurrency=0), "concurrency must be a whole number of at least 1"),
    (dict(max_in_flight_per_target=0), "max_in_flight_per_target must be a whole number of at least 1"),
    (dict(ray_address="ray://head:10001"), "a Ray address is only used by the ray engine"),
    (dict(records=[{"image": png()}]), 'record 0 is not a mapping with an "image" and a "text"'),
    (dict(records=[RECORDS[0], "cat.png"]), "record 1 is not a mapping"),
])
def test_bad_arguments_are_refused_before_any_call(arguments, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_audit(**{"records": RECORDS, "address": "127.0.0.1:1", "targets": ["a"], "out": tmp_path / "audit",
                     **arguments})
    assert not (tmp_path / "audit").exists()


def test_an_unknown_explain_option_or_a_file_as_out_is_refused(tmp_path):
    with pytest.raises(TypeError, match="does not take per instance: colour"):
        run_audit(RECORDS, address="127.0.0.1:1", targets=["a"], out=tmp_path / "audit", colour="red")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; it must be a directory of Parquet parts"):
        run_audit(RECORDS, address="127.0.0.1:1", targets=["a"], out=tmp_path / "file")


def test_a_half_written_part_is_ignored_and_a_success_outlives_an_error(tmp_path):
    out = tmp_path / "audit"
    out.mkdir()
    (out / ".part-00000000000000000001-deadbeef.parquet.tmp").write_bytes(b"PAR1 half a file")
    sink = ParquetSink(out)
    assert list(out.iterdir()) == [] and sink.done() == set()
    explanation = {"phi": [[0.5, -0.25]], "tokens": ["a", "cat"], "metrics": {"synergy_ratio": 0.6, "total": 0.75,
                   "synergy": 0.5, "suppression": 0.25}, "evaluations": 4, "seconds": 0.1, "seed": 5, "method": "exact"}
    sink.write(result_row(("i0", "a", "k"), "a cat", "", {"explanation": explanation}))
    sink.write(result_row(("i0", "a", "k"), "a cat", "", {"error": "later failure"}))
    sink.write(result_row(("i1", "a", "k"), "a cat", "", {"error": "no luck"}))
    again = ParquetSink(out)
    assert again.done() == {("i0", "a", "k")} and again.rows[("i1", "a", "k")]["error"] == "no luck"
    row = again.rows[("i0", "a", "k")]
    assert (row["phi"], row["phi_rows"], row["phi_cols"], row["tokens"]) == ([0.5, -0.25], 1, 2, ["a", "cat"])
    again.compact()
    assert len(list(out.iterdir())) == 1 and read_audit(out).num_rows == 2


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_token_bound_for_plaintext_is_refused_before_any_task_and_never_shown(engine, tmp_path):
    with pytest.raises(ValueError, match="a bearer token is only sent over TLS") as info:
        run_audit(RECORDS, address="10.1.2.3:50050", targets=["a"], engine=engine, out=tmp_path / "audit",
                  token="s3cret-token", progress=False)
    assert "s3cret" not in str(info.value) and read_audit(tmp_path / "audit").num_rows == 0


def test_without_ray_the_engine_and_the_cli_say_what_to_install(service, tmp_path, monkeypatch, capsys):
    address, _ = service
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"needs the ray package, .*: pip install 'multishap\[ray\]'"):
        run_audit(RECORDS, address=address, targets=["a"], engine="ray", out=tmp_path / "audit", progress=False)
    manifest = write_manifest(tmp_path, RECORDS[:1])
    assert main(["audit", str(manifest), "--engine", "ray", "--address", address, "--target", "a"]) == 1
    assert "pip install 'multishap[ray]'" in capsys.readouterr().err


def test_ray_phi_equals_the_local_engines_bit_for_bit_and_a_rerun_explains_nothing(cluster, service, local, tmp_path):
    (address, gauges), (reference, _) = service, local
    out = tmp_path / "audit"
    report = run_audit(RECORDS, address=address, targets=["a", "b"], engine="ray", out=out, concurrency=2,
                       progress=False, **OPTIONS)
    assert len(report.rows) == 16 and not report.failures and report.skipped == 0
    assert_same(phis(out), reference, ["a", "b"])
    assert set(report.targets) == {"a", "b"} and all(s.instances == 8 for s in report.targets.values())
    ratios = [r["synergy_ratio"] for r in report.rows if r["target"] == "a"]
    assert report.targets["a"].msr == pytest.approx(np.mean(ratios))
    assert len(list(out.glob("part-*.parquet"))) == 1  # compacted

    before = {name: gauges[name].requests for name in ("a", "b")}
    again = run_audit(RECORDS, address=address, targets=["a", "b"], engine="ray", out=out, progress=False, **OPTIONS)
    assert again.skipped == 16 and len(again.rows) == 16 and not again.failures
    assert {name: gauges[name].requests for name in ("a", "b")} == before

    more = RECORDS + [{**RECORDS[0], "id": "extra"}]
    grown = run_audit(more, address=address, targets=["a", "b"], out=out, progress=False, **OPTIONS)
    assert grown.skipped == 16 and len(grown.rows) == 18
    assert all(gauges[name].requests > before[name] for name in ("a", "b"))
    assert np.array_equal(phis(out)[("extra", "a")], reference[("i0", "a")])


def test_a_worker_killed_mid_audit_loses_nothing(cluster, service, local, tmp_path):
    (address, gauges), (reference, needed) = service, local
    out, slow = tmp_path / "audit", gauges["slow"]
    requests = slow.requests
    result: dict = {}
    # One task at a time, so the Score requests made after a row is stored are the running task's.
    run = threading.Thread(target=lambda: result.update(report=run_audit(
        RECORDS, address=address, targets=["slow"], engine="ray", out=out, concurrency=1, progress=False,
        **OPTIONS)))
    run.start()
    deadline = time.monotonic() + 40
    while len(list(out.glob("part-*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    mark = slow.requests
    while slow.requests < mark + 2 and time.monotonic() < deadline:  # the next task is scoring, far from done
        time.sleep(0.005)
    victim = None
    while victim is None and run.is_alive() and time.monotonic() < deadline:
        victim = next((pid for pid, title in processes() if title.startswith(f"ray::{TASK_NAME}")), None)
    assert victim is not None, "no Ray worker was running an explanation"
    os.kill(victim, 9)
    run.join(60)
    assert not run.is_alive()
    report = result["report"]
    assert len(report.rows) == 8 and not report.failures
    assert_same(phis(out), reference, ["slow"])
    # The killed task's Score requests were made again by its retry: more than the 8 explanations need.
    assert slow.requests - requests > needed["slow"]


def processes() -> list[tuple[int, str]]:
    """(pid, command line) of this machine's processes, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except OSError:
                continue
    return found


def test_the_per_target_bound_holds_on_both_engines(cluster, service, tmp_path):
    address, gauges = service
    slow = gauges["slow"]
    slow.most = 0
    run_audit(RECORDS[:4], address=address, targets=["slow"], out=tmp_path / "local", concurrency=4,
              max_in_flight_per_target=2, progress=False, **OPTIONS)
    assert slow.most == 2  # threads were free for 4: the bound, not the pool, held it at 2
    slow.most = 0
    run_audit(RECORDS[:4], address=address, targets=["slow"], engine="ray", out=tmp_path / "ray", concurrency=2,
              max_in_flight_per_target=1, progress=False, **OPTIONS)
    assert slow.most == 1  # the cluster runs 2 tasks at once; the driver started 1 at a time at this target


def test_the_sdk_audits_through_the_clients_address(service, local, tmp_path):
    (address, _), (reference, _) = service, local
    with ExplainerClient(address, timeout=60) as client:
        report = client.audit(RECORDS[:2], targets=["b"], out=tmp_path / "audit", progress=False, **OPTIONS)
    assert [row["id"] for row in report.rows] == ["i0", "i1"] and report.targets["b"].instances == 2
    assert all(np.array_equal(phi, reference[slot]) for slot, phi in phis(tmp_path / "audit").items())
    assert set(report.to_dataframe()["target"]) == {"b"}


def write_manifest(folder: Path, records: list[dict]) -> Path:
    """A JSON-lines manifest of ``records`` with each image in a file beside it."""
    lines = []
    for record in records:
        (folder / f"{record['id']}.png").write_bytes(record["image"])
        lines.append(json.dumps({**record, "image": f"{record['id']}.png"}) + "\n")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(lines))
    return manifest


def test_the_cli_audits_a_manifest_resumes_and_exits_1_when_a_row_failed(service, local, tmp_path, capsys):
    (address, _), (reference, _) = service, local
    manifest, out = write_manifest(tmp_path, RECORDS[:3]), tmp_path / "audit"
    argv = ["audit", str(manifest), "--engine", "local", "--address", address, "--target", "a", "--target", "b",
            "--out", str(out), "--grid", "2x2", "--budget", "200", "--seed", "5", "--concurrency", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| target | instances | MSR | SDR | failed |" in printed
    assert "| a | 3 |" in printed and "| b | 3 |" in printed
    got = phis(out)
    assert len(got) == 6 and all(np.array_equal(phi, reference[slot]) for slot, phi in got.items())

    (tmp_path / "junk.png").write_bytes(b"not an image")
    with manifest.open("a") as f:
        f.write(json.dumps({"id": "junk", "image": "junk.png", "text": TEXT}) + "\n")
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "6 rows" in captured.out and "(6 resumed, 2 failed)" in captured.out
    assert "failed junk at a:" in captured.err and "failed junk at b:" in captured.err
