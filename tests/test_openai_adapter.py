"""The OpenAI-compatible adapter end to end: real openai client, real HTTP, real gRPC.

The simulated endpoint decodes each coalition from the PNG and prompt it receives and
answers with the synthetic game's value as the target's log-probability, so Phi through
this adapter must equal Phi through the synthetic adapter.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

from multishap.adapters.openai import Price
from multishap.adapters.openai.simulator import FaultPlan
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.rpc.convert import matrix_from_proto
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import explainer_pb2, scorer_pb2, scorer_pb2_grpc
from openai_env import (KEY, cli_adapter, game_for, instance, openai_adapter, options, shift_for, simulator,
                        synthetic, with_scoring)
from servers import adapters, explainer


def explain(stub, target: str, inst, **fields) -> explainer_pb2.Explanation:
    request = explainer_pb2.ExplainRequest(target=target, instance=inst, **fields)
    return list(stub.Explain(request, timeout=120))[-1].explanation


def all_masks(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(bool)


def score(stub, inst, masks: np.ndarray, **fields) -> scorer_pb2.ScoreResponse:
    return stub.Score(scorer_pb2.ScoreRequest(instance=inst, num_players=masks.shape[1], num_coalitions=len(masks),
                                              coalitions=pack_coalitions(masks), **fields), timeout=60)


@pytest.mark.parametrize("fault_rate", [0.0, 0.3])
def test_phi_equals_the_synthetic_adapter(tmp_path, fault_rate):
    inst = instance()
    faults = FaultPlan(rate=fault_rate, retry_after_ms=10, slow_seconds=0.8, seed=1)
    # With 10 attempts, 1024 inputs at 30% faults run out for some input in 1 run of 170 (0.3^10 x 1024),
    # and far more often on a loaded machine, where answers also pass the 0.5 s timeout; 30 attempts don't.
    with simulator(inst, faults) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite", max_attempts=30)) \
            as (api, _, _), \
            adapters(SyntheticBackend()) as (syn,), \
            explainer({"api": [api.address], "syn": [syn.address]}, max_batch=64, timeout_s=60) as (_, stub, _):
        runs = {}
        for method, budget in (("exact", 1024), ("kernel", 300)):
            got = explain(stub, "api", inst, method=method, budget=budget, seed=7)
            want = explain(stub, "syn", synthetic(inst), method=method, budget=budget, seed=7)
            np.testing.assert_allclose(matrix_from_proto(got.phi), matrix_from_proto(want.phi), atol=1e-9)
            assert got.evaluations == want.evaluations
            assert got.usage.requests + got.usage.cache_hits == got.evaluations
            runs[method] = got
        assert np.abs(matrix_from_proto(want.phi)).max() > 0.05  # the game has interactions to find
        assert runs["exact"].usage.requests == 1024 and runs["kernel"].usage.requests == 0  # all cached
        assert max(sim.traffic.answered.values()) >= 1
        if fault_rate:
            assert sum(sim.traffic.faults.values()) > 50 and set(sim.traffic.faults) == set(faults.kinds)
            # Every fault is retried, except a slow answer that a loaded client only reads after it has
            # arrived (its socket wait then sees the data, not the timeout).
            failures = sum(n for kind, n in sim.traffic.faults.items() if kind != "slow")
            assert runs["exact"].usage.retries >= failures


def test_probability_scores_and_usage(tmp_path):
    inst = instance()
    game, n = game_for(inst), 4 + len(inst.text.split())
    masks = all_masks(n)[::7]
    with simulator(inst) as sim, openai_adapter(with_scoring(options(sim, tmp_path / "c.sqlite"),
                                                             score="prob")) as (_, _, stub):
        reply = score(stub, inst, masks, job="j1")
        values = unpack_values(reply.values, len(masks))
        np.testing.assert_allclose(values, np.exp(game(masks) - shift_for(game)), rtol=1e-12)
        assert reply.bounded == b"" and reply.usage.requests == len(masks)
        assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens == len(masks)
        again = score(stub, inst, masks, job="j2")
        assert again.values == reply.values
        assert again.usage.requests == 0 and again.usage.cache_hits == len(masks)
        assert max(sim.traffic.received.values()) == 1


def test_restart_mid_explanation_pays_each_masked_input_once(tmp_path):
    inst = instance(rows=3, cols=3)
    cache = tmp_path / "c.sqlite"
    with simulator(inst, latency=0.01) as sim, adapters(SyntheticBackend()) as (syn,):
        with openai_adapter(options(sim, cache, concurrency=4)) as (api, backend, _), \
                explainer({"api": [api.address]}, max_batch=16, max_in_flight=2, timeout_s=60) as (_, stub, _):
            failure = []

            def run() -> None:
                try:
                    explain(stub, "api", inst, method="kernel", budget=400, seed=3)
                except grpc.RpcError as err:
                    failure.append(err)

            worker = threading.Thread(target=run)
            worker.start()
            while sum(sim.traffic.answered.values()) < 80:
                time.sleep(0.01)
            backend.close()
            worker.join(60)
            assert failure and failure[0].code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in failure[0].details()
        before = sum(sim.traffic.answered.values())
        with openai_adapter(options(sim, cache)) as (api, _, _), \
                explainer({"api": [api.address], "syn": [syn.address]}, max_batch=16) as (_, stub, _):
            got = explain(stub, "api", inst, method="kernel", budget=400, seed=3)
            want = explain(stub, "syn", synthetic(inst), method="kernel", budget=400, seed=3)
        np.testing.assert_allclose(matrix_from_proto(got.phi), matrix_from_proto(want.phi), atol=1e-9)
        assert got.usage.cache_hits >= before and got.usage.requests == got.evaluations - got.usage.cache_hits
        assert max(sim.traffic.received.values()) == 1
        assert sum(sim.traffic.received.values()) == got.evaluations


def test_requests_per_minute_limit_holds_at_the_server(tmp_path):
    inst = instance()
    masks = all_masks(4 + len(inst.text.split()))[:41]
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite", rpm=1200,
                                                        concurrency=16)) as (_, _, stub):
        score(stub, inst, masks)
    arrivals = sorted(sim.traffic.arrivals)
    assert len(arrivals) == 41
    assert sim.traffic.max_in_window(1.0) <= 20 + 1
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= 20 * 1.05


def test_retry_after_is_honoured(tmp_path):
    inst = instance()
    with simulator(inst, FaultPlan(rate=1.0, kinds=("429",), retry_after_ms=300)) as sim, \
            openai_adapter(options(sim, tmp_path / "c.sqlite", max_attempts=3, concurrency=1)) as (_, _, stub):
        with pytest.raises(grpc.RpcError) as info:
            score(stub, inst, all_masks(10)[:1])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "failed 3 times" in info.value.details() and "HTTP 429" in info.value.details()
    gaps = np.diff(sorted(sim.traffic.arrivals))
    # retry-after-ms (300 ms) wins over retry-after (1 s), and is waited for in full.
    assert len(gaps) == 2 and 0.3 <= gaps.min() and gaps.max() < 0.9


def test_missing_target_gives_a_bounded_flagged_score(tmp_path):
    inst = instance()
    n = 4 + len(inst.text.split())
    masks = all_masks(n)[:64]
    missing = masks[:, 0] & ~masks[:, 1]
    with simulator(inst, missing=lambda mask: bool(mask[0] and not mask[1])) as sim, \
            openai_adapter(with_scoring(options(sim, tmp_path / "c.sqlite"), score="prob")) as (api, _, stub):
        reply = score(stub, inst, masks)
        values = unpack_values(reply.values, len(masks))
        flags = np.unpackbits(np.frombuffer(reply.bounded, dtype=np.uint8))[: len(masks)].astype(bool)
        np.testing.assert_array_equal(flags, missing)
        assert reply.usage.bounded == missing.sum()
        game = game_for(inst)
        p = np.exp(game(masks) - shift_for(game))
        # The simulator lists 20 other tokens holding 90% of the rest, in weights 20:19:...:1.
        listed = (1 - p) * 0.9
        smallest = listed * 1 / 210
        bound = np.minimum(6 * smallest, 1 - listed)  # "yes" has 6 spellings under normalized matching
        np.testing.assert_allclose(values[missing], bound[missing], rtol=1e-9)
        np.testing.assert_allclose(values[~missing], p[~missing], rtol=1e-12)
        with explainer({"api": [api.address]}) as (_, ex, _):
            got = explain(ex, "api", inst, method="exact", budget=1024)
        assert got.usage.bounded == int(sum(1 for m in all_masks(n) if m[0] and not m[1]))


def test_wrong_key_is_a_clear_authentication_error_without_a_retry_storm(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-key-abcdef0123456789"
    inst = instance()
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite", key=wrong,
                                                        concurrency=4)) as (api, _, stub):
        with pytest.raises(grpc.RpcError) as info:
            score(stub, inst, all_masks(10)[:200])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "refused the adapter's API key" in info.value.details() and "HTTP 401" in info.value.details()
        assert sim.traffic.unauthorized <= 4
        with explainer({"api": [api.address]}) as (_, ex, _):
            with pytest.raises(grpc.RpcError) as via_explainer:
                explain(ex, "api", inst, method="exact", budget=1024)
        assert via_explainer.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{api.metrics_port}/metrics").read().decode()
    assert sim.traffic.unauthorized <= 8
    # The simulator echoes the key it was given, as some servers do; it must go no further.
    for text in (info.value.details(), via_explainer.value.details(), caplog.text, metrics):
        assert wrong not in text
    # Nor does the endpoint's address reach a reply: the adapter's log has it.
    for reply in (info.value.details(), via_explainer.value.details()):
        assert "http" not in reply and sim.base_url.split(":")[-1].split("/")[0] not in reply, reply
    assert sim.base_url in caplog.text
    assert 'multishap_openai_requests_total{status="401"}' in metrics


def test_malformed_json_is_a_clear_error_and_the_adapter_keeps_serving(tmp_path):
    inst = instance()
    masks = all_masks(10)[:5]
    with simulator(inst, FaultPlan(rate=1.0, kinds=("malformed",))) as sim, \
            openai_adapter(options(sim, tmp_path / "c.sqlite", max_attempts=2)) as (_, _, stub):
        with pytest.raises(grpc.RpcError) as info:
            score(stub, inst, masks)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not valid JSON" in info.value.details()
        sim.faults = FaultPlan()
        assert score(stub, inst, masks).usage.requests == len(masks)


def test_answers_without_log_probabilities_fail_at_once_and_are_counted(tmp_path):
    inst = instance()
    masks = all_masks(10)[:5]
    with simulator(inst, FaultPlan(rate=1.0, kinds=("unusable",))) as sim, \
            openai_adapter(options(sim, tmp_path / "c.sqlite", concurrency=1)) as (api, _, stub):
        with pytest.raises(grpc.RpcError) as info:
            score(stub, inst, masks)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{api.metrics_port}/metrics").read().decode()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "must support logprobs=true" in info.value.details()
    assert len(sim.traffic.arrivals) == 1  # neither retried nor sent for the other inputs
    assert 'multishap_openai_tokens_total{kind="completion"} 1.0' in metrics  # billed, so counted


def test_a_request_joined_across_explanations_survives_the_others_cap(tmp_path):
    inst = instance()
    masks = all_masks(10)[:2]
    with simulator(inst, latency=0.3) as sim, \
            openai_adapter(options(sim, tmp_path / "c.sqlite", concurrency=1, max_requests=1)) as (_, _, stub):
        capped = stub.Score.future(scorer_pb2.ScoreRequest(
            instance=inst, num_players=10, num_coalitions=2, coalitions=pack_coalitions(masks), job="a"))
        time.sleep(0.1)  # "a" sends its first input and queues the second, which "b" then joins
        other = score(stub, inst, masks[1:], job="b")
        with pytest.raises(grpc.RpcError) as info:
            capped.result()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert other.usage.requests == 1 and len(unpack_values(other.values, 1)) == 1
    assert max(sim.traffic.received.values()) == 1


def test_cancelling_an_explanation_stops_new_requests(tmp_path):
    inst = instance(rows=3, cols=3)
    with simulator(inst, latency=0.2) as sim, \
            openai_adapter(options(sim, tmp_path / "c.sqlite", concurrency=4)) as (api, _, _), \
            explainer({"api": [api.address]}, max_batch=64) as (_, stub, _):
        call = stub.Explain(explainer_pb2.ExplainRequest(target="api", instance=inst, method="kernel", budget=400),
                            timeout=60)
        while len(sim.traffic.arrivals) < 8:
            time.sleep(0.01)
        call.cancel()
        cancelled_at = time.monotonic()
        time.sleep(1.0)
    late = [t for t in sim.traffic.arrivals if t > cancelled_at + 0.3]
    assert not late and len(sim.traffic.arrivals) < 40
    assert sum(sim.traffic.answered.values()) == len(sim.traffic.arrivals)  # what was sent was answered


def test_dry_run_estimates_and_pays_nothing(tmp_path):
    inst = instance(rows=3, cols=3)
    price = Price(input=2.5, output=10.0)
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite", price=price)) as (api, _, _), \
            explainer({"api": [api.address]}, max_batch=32) as (_, stub, _):
        dry = explain(stub, "api", inst, method="kernel", budget=300, seed=2, dry_run=True)
        assert dry.dry_run and not sim.traffic.arrivals
        assert dry.usage.requests == dry.evaluations > 0 and dry.usage.cache_hits == 0
        assert dry.usage.prompt_tokens > 0 and dry.usage.cost == pytest.approx(
            price.cost(dry.usage.prompt_tokens, dry.usage.completion_tokens))
        real = explain(stub, "api", inst, method="kernel", budget=300, seed=2)
        assert real.evaluations == dry.evaluations and real.usage.requests == dry.usage.requests
        per_request = real.usage.prompt_tokens / real.usage.requests
        # The estimate is a heuristic; here it is within a factor of 2 of what the server billed.
        assert 0.5 < dry.usage.prompt_tokens / dry.usage.requests / per_request < 2
        again = explain(stub, "api", inst, method="kernel", budget=300, seed=2, dry_run=True)
        assert again.usage.requests == 0 and again.usage.cache_hits == real.evaluations


def test_spending_caps_per_explanation(tmp_path):
    inst = instance(rows=3, cols=3)
    cache = tmp_path / "c.sqlite"
    with simulator(inst) as sim:
        with openai_adapter(options(sim, cache, max_requests=50)) as (api, _, _), \
                explainer({"api": [api.address]}, max_batch=16) as (_, stub, _):
            with pytest.raises(grpc.RpcError) as info:
                explain(stub, "api", inst, method="kernel", budget=300)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "50 paid requests (--max-requests)" in info.value.details()
            assert sum(sim.traffic.answered.values()) == 50
        price = Price(input=1000.0, output=0.0)
        with openai_adapter(options(sim, cache, price=price, max_cost=1.0)) as (api, _, _), \
                explainer({"api": [api.address]}, max_batch=16) as (_, stub, _):
            with pytest.raises(grpc.RpcError) as info:
                explain(stub, "api", inst, method="kernel", budget=300)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-cost" in info.value.details()
        with openai_adapter(options(sim, cache)) as (api, _, _), \
                explainer({"api": [api.address]}, max_batch=16) as (_, stub, _):
            done = explain(stub, "api", inst, method="kernel", budget=300)
        assert done.usage.cache_hits >= 50
        assert max(sim.traffic.received.values()) == 1


def test_prompt_logprobs_score_multi_word_answers(tmp_path):
    inst = instance(target="golden retriever")
    game, n = game_for(inst), 4 + len(inst.text.split())
    masks = all_masks(n)[::5]
    with simulator(inst) as sim:
        with openai_adapter(options(sim, tmp_path / "a.sqlite")) as (_, _, stub):
            with pytest.raises(grpc.RpcError) as info:
                score(stub, inst, masks)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "--prompt-logprobs" in info.value.details()
        opts = with_scoring(options(sim, tmp_path / "b.sqlite"), score="logprob", prompt_logprobs=True)
        with openai_adapter(opts) as (_, _, stub):
            values = unpack_values(score(stub, inst, masks).values, len(masks))
    np.testing.assert_allclose(values, game(masks) - shift_for(game), atol=1e-12)


def test_token_id_matching(tmp_path):
    inst = instance()
    game, n = game_for(inst), 4 + len(inst.text.split())
    masks = all_masks(n)[::9]
    with simulator(inst) as sim, openai_adapter(with_scoring(options(sim, tmp_path / "c.sqlite"),
                                                             target_token_ids=frozenset({9454}))) as (_, _, stub):
        values = unpack_values(score(stub, inst, masks).values, len(masks))
    np.testing.assert_allclose(values, game(masks) - shift_for(game), atol=1e-12)


def test_metrics_count_requests_retries_tokens_and_cache(tmp_path):
    inst = instance()
    masks = all_masks(10)[:30]
    with simulator(inst, FaultPlan(rate=0.3, kinds=("429", "500"), seed=2)) as sim, \
            openai_adapter(options(sim, tmp_path / "c.sqlite")) as (api, _, stub):
        score(stub, inst, masks)
        score(stub, inst, masks)
        text = urllib.request.urlopen(f"http://127.0.0.1:{api.metrics_port}/metrics").read().decode()

    def value(series: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))

    assert value('multishap_openai_requests_total{status="200"}') == 30
    assert value('multishap_openai_requests_total{status="429"}') == sim.traffic.faults["429"]
    assert value("multishap_openai_retries_total") == sum(sim.traffic.faults.values())
    assert value("multishap_openai_cache_hits_total") == 30 and value("multishap_openai_cache_misses_total") == 30
    assert value('multishap_openai_tokens_total{kind="completion"}') == 30
    assert value("multishap_openai_request_seconds_count") == len(sim.traffic.arrivals)


def test_cli_adapter_never_prints_the_key(tmp_path):
    inst = instance()
    wrong = "sk-cli-secret-9876543210"
    with simulator(inst) as sim, cli_adapter(sim.base_url, tmp_path / "c.sqlite", wrong) as run:
        with grpc.insecure_channel(run["address"]) as channel, pytest.raises(grpc.RpcError) as info:
            score(scorer_pb2_grpc.ScorerStub(channel), inst, all_masks(10)[:3])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert run["code"] == 0 and "refused the adapter's API key" in run["err"]
    for text in (run["out"], run["err"], info.value.details()):
        assert wrong not in text


def test_cli_dry_run_then_explain_through_the_cli_adapter(tmp_path, monkeypatch, capsys):
    from multishap.client.cli import main as cli

    inst = instance()
    image = tmp_path / "photo.png"
    image.write_bytes(inst.image)
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."sim-vlm"]\ninput = 1.0\noutput = 2.0\n')
    with simulator(inst) as sim, cli_adapter(sim.base_url, tmp_path / "c.sqlite", KEY, "--prices", str(prices),
                                            "--rpm", "6000", "--max-cost", "5") as run, \
            explainer({"api": [run["address"]]}) as (running, _, _):
        monkeypatch.setenv("MULTISHAP_EXPLAIN_ADDRESS", running.address)
        monkeypatch.setenv("MULTISHAP_EXPLAIN_TARGET", "api")
        args = ["explain", "--image", str(image), "--text", inst.text, "--answer", inst.target, "--grid", "2x2",
                "--method", "exact", "--budget", "1024", "--out", str(tmp_path / "out")]
        assert cli(args + ["--dry-run"]) == 0
        dry = capsys.readouterr().out
        assert not sim.traffic.arrivals
        assert cli(args) == 0
        real = capsys.readouterr().out
    assert "would score 1024 coalitions" in dry and "would send 1024 endpoint requests (0 answered from cache)" in dry
    assert "sent 1024 endpoint requests (0 answered from cache, 0 retries)" in real and ", cost 0.2" in real
    assert run["code"] == 0 and KEY not in run["err"]


def test_dataset_reports_sum_what_the_explanations_cost(tmp_path):
    from multishap.client import ExplainerClient

    inst = instance()
    record = {"id": "cat", "image": inst.image, "text": inst.text, "answer": inst.target}
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite")) as (api, _, _), \
            explainer({"api": [api.address]}) as (running, _, _), ExplainerClient(running.address) as client:
        first = client.explain_dataset([record], target="api", out=tmp_path / "a.jsonl", grid=(2, 2),
                                       method="exact", budget=1024)
        again = client.explain_dataset([record], target="api", out=tmp_path / "b.jsonl", grid=(2, 2),
                                       method="exact", budget=1024)
        resumed = client.explain_dataset([record], target="api", out=tmp_path / "a.jsonl", grid=(2, 2),
                                         method="exact", budget=1024)
    assert first.usage.requests == 1024 and first.usage.prompt_tokens > 0
    assert again.usage.requests == 0 and again.usage.cache_hits == 1024
    assert resumed.skipped == 1 and resumed.usage == first.usage
    assert sum(sim.traffic.received.values()) == 1024
