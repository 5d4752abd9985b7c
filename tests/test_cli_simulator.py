"""An offline audit rehearsal with processes only: `multishap simulator` serves a simulated endpoint,
`multishap adapter openai` scores through it and `multishap serve` explains. The exact explanation is the
simulator game's exact Phi, and a dry run past the adapter's --max-requests warns."""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np

from images import png
from multishap.client import ExplainerClient
from multishap.client.cli import main as cli
from multishap.client.cli.explain import over_caps
from multishap.client.explanation import Target, Usage
from multishap.service.math.estimators import exact_interactions
from multishap.service.math.games import make_game
from servers import cli_process, free_port, wait_serving

KEY = "sk-rehearsal-0123456789"
TEXT, ANSWER, FAMILY, SEED = "is the cat", "yes", "mixed", 5
CAP = 40  # requests: the 2x1 grid's 32 coalitions fit, the 3x1 grid's 64 (less 16 cached) do not


@contextmanager
def rehearsal(tmp_path):
    """The simulator, the openai adapter and the explainer as processes. Yields the image, the explainer's
    address and a dict that gets the simulator's start-up line, then, once all are stopped, its output and
    every exit code."""
    image = tmp_path / "photo.png"
    image.write_bytes(png(40, 30, seed=4))
    sim_port, adapter_port, port = free_port(), free_port(), free_port()
    env = {"OPENAI_API_KEY": KEY}
    sim = cli_process("simulator", "--image", str(image), "--text", TEXT, "--answer", ANSWER, "--grid", "2x1",
                      "--family", FAMILY, "--seed", str(SEED), "--port", str(sim_port), "--fault-rate", "0.3",
                      "--fault-kinds", "429", env=env)
    run = {"started": sim.stdout.readline()}
    base_url = run["started"].split(" at ")[1].split()[0]
    with (tmp_path / "servers.log").open("w") as log:
        adapter = cli_process("adapter", "openai", "--base-url", base_url, "--model", "sim-vlm", "--cache",
                              str(tmp_path / "c.sqlite"), "--score", "logprob", "--max-requests", str(CAP), "--port",
                              str(adapter_port), "--metrics-port", "-1", env=env, log=log)
        server = cli_process("serve", "--port", str(port), "--metrics-port", "-1", "--grace", "1", "--drain-delay",
                             "0", env={"MULTISHAP_TARGETS": f"api=127.0.0.1:{adapter_port}"}, log=log)
        try:
            wait_serving(f"127.0.0.1:{adapter_port}", adapter)
            wait_serving(f"127.0.0.1:{port}", server)
            yield image, f"127.0.0.1:{port}", run
        finally:
            for proc in (server, adapter, sim):
                proc.terminate()
            run["served"] = sim.communicate(timeout=60)[0]
            run["codes"] = [proc.wait(timeout=60) for proc in (sim, adapter, server)]
    run["log"] = (tmp_path / "servers.log").read_text()


def test_an_audit_rehearsed_offline_explains_the_simulated_game_exactly(tmp_path, capsys):
    with rehearsal(tmp_path) as (image, address, run):
        with ExplainerClient(address, timeout=120) as client:
            exp = client.explain(str(image), TEXT, target="api", answer=ANSWER, grid=(2, 1), method="exact")
        argv = ["explain", "--address", address, "--target", "api", "--image", str(image), "--text", TEXT,
                "--answer", ANSWER, "--method", "exact", "--dry-run"]
        assert cli([*argv, "--grid", "3x1"]) == 0
        over = capsys.readouterr()
        assert cli([*argv, "--grid", "2x1"]) == 0
        under = capsys.readouterr()

    assert run["started"].startswith("simulated endpoint at http://127.0.0.1:") and f"game {FAMILY}" in run["started"]
    n = len(TEXT.split())
    np.testing.assert_allclose(exp.phi, exact_interactions(make_game(FAMILY, 2, n, SEED), 2, n), atol=1e-6)
    assert exp.usage.retries > 0 and exp.target.max_requests == CAP

    assert "would score 64 coalitions" in over.out
    requests = int(re.search(r"would send (\d+) endpoint requests", over.out)[1])  # less those already cached
    [warning] = [line for line in over.err.splitlines() if line.startswith("warning:")]
    assert requests > CAP and f"would need {requests} endpoint requests, over the adapter's cap of {CAP}" in warning
    assert "would send 0 endpoint requests (32 answered from cache)" in under.out
    assert "warning:" not in under.err

    assert run["codes"] == [0, 0, 0] and "Traceback" not in run["log"]
    assert "served " in run["served"] and " 429" in run["served"].split("injected faults:")[1]
    assert KEY not in run["log"] + run["served"] + run["started"]


def test_over_caps_names_each_cap_an_estimate_passes():
    capped = Target("api", [], max_requests=100, max_cost=0.5)
    assert over_caps(capped, Usage(requests=100, cost=0.5)) is None
    assert over_caps(capped, Usage(requests=101, cost=0.75)) == (
        "warning: this explanation would need 101 endpoint requests, over the adapter's cap of 100 (--max-requests) "
        "and a cost of 0.7500, over the adapter's cap of 0.5 (--max-cost): it would stop with RESOURCE_EXHAUSTED "
        "part-way (what it paid for stays cached)")
    assert over_caps(Target("local", []), Usage(requests=10**6, cost=10.0)) is None
