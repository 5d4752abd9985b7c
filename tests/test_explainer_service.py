"""The explainer service over real adapters on loopback, through the generated stubs."""

import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.math.games import make_game
from multishap.service.rpc.config import Limits, ServerSettings
from multishap.service.math.estimators import estimate_interactions
from multishap.service.rpc.convert import matrix_from_proto
from multishap.v1 import common_pb2, explainer_pb2
from servers import TEXT, NaNBackend, SlowBackend, adapters, explainer, instance

M, N = 9, len(TEXT.split())


def explain(stub, target="syn", inst=None, timeout=60, **fields):
    fields.setdefault("budget", 3000)
    fields.setdefault("method", "kernel")
    request = explainer_pb2.ExplainRequest(target=target, instance=inst or instance(), **fields)
    events = list(stub.Explain(request, timeout=timeout))
    assert all(e.WhichOneof("event") == "progress" for e in events[:-1])
    return events[-1].explanation


def library_phi(method="kernel", budget=3000, seed=0, family="mlp", game_seed=3):
    game = make_game(family, M, N, game_seed)
    return estimate_interactions(game, M, N, method=method, budget=budget, seed=seed).phi


@pytest.fixture(scope="module")
def service():
    limits = Limits(max_concurrent_explanations=16)
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}, limits, max_batch=128) as (e, stub, _):
        yield a, e, stub


@pytest.mark.parametrize("method", ["kernel", "multishap", "exact"])
def test_phi_through_grpc_equals_library_bit_for_bit(service, method):
    _, _, stub = service
    budget = 1 << (M + N) if method == "exact" else 3000
    exp = explain(stub, method=method, budget=budget, seed=5)
    assert np.array_equal(matrix_from_proto(exp.phi), library_phi(method, budget, seed=5))
    assert list(exp.tokens) == TEXT.split() and (exp.grid.rows, exp.grid.cols) == (3, 3)
    assert exp.method == method and exp.seed == 5 and exp.target.model_id == "multishap/synthetic"
    assert exp.metrics.total == pytest.approx(np.abs(matrix_from_proto(exp.phi)).sum())


def test_progress_events_count_up_to_the_evaluations(service):
    _, _, stub = service
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="kernel", budget=3000)
    events = list(stub.Explain(request, timeout=60))
    done = [e.progress.evaluations for e in events[:-1]]
    assert done == sorted(done) and done[-1] == events[-1].explanation.evaluations
    assert all(e.progress.budget == 3000 for e in events[:-1])


def test_ten_concurrent_explanations_are_all_correct(service):
    _, _, stub = service
    results = {}

    def run(seed):
        results[seed] = matrix_from_proto(explain(stub, seed=seed, budget=1500).phi)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in range(10):
        assert np.array_equal(results[seed], library_phi(budget=1500, seed=seed))


def test_metrics_count_the_evaluations_reported(service):
    _, e, stub = service
    before = e.registry.get_sample_value("multishap_forward_passes_total", {"target": "syn"}) or 0.0
    exp = explain(stub, budget=2000, seed=9)
    after = e.registry.get_sample_value("multishap_forward_passes_total", {"target": "syn"})
    assert after - before == exp.evaluations
    page = urllib.request.urlopen(f"http://127.0.0.1:{e.metrics_port}/metrics", timeout=5).read().decode()
    assert 'multishap_forward_passes_total{target="syn"}' in page
    assert "multishap_explain_seconds_bucket" in page and "multishap_explanations_in_progress" in page


def test_list_targets_keeps_addresses_server_side_unless_the_operator_shows_them(service):
    a, _, stub = service
    reply = stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=10)
    assert [(t.name, list(t.addresses), t.reachable) for t in reply.targets] == [("syn", [], True)]
    assert list(explain(stub, budget=500).target.addresses) == []
    with explainer({"syn": [a.address]}, server=ServerSettings(expose_addresses=True)) as (_, shown, _):
        reply = shown.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=10)
        assert [(t.name, list(t.addresses)) for t in reply.targets] == [("syn", [a.address])]
        assert list(explain(shown, budget=500).target.addresses) == [a.address]


@pytest.mark.parametrize(
    "target, inst, budget, code, message",
    [
        ("nope", instance(), 100, grpc.StatusCode.NOT_FOUND, "unknown target 'nope'; known targets: syn"),
        ("syn", instance(image=b"\x89PNG broken"), 100, grpc.StatusCode.INVALID_ARGUMENT, "image could not be decoded"),
        ("syn", instance(grid=common_pb2.Grid(rows=0, cols=3)), 100, grpc.StatusCode.INVALID_ARGUMENT, "at least 1 row"),
        ("syn", instance(text="  "), 100, grpc.StatusCode.INVALID_ARGUMENT, "no text"),
        ("syn", instance(), 10**9, grpc.StatusCode.RESOURCE_EXHAUSTED,
         "budget 1000000000 coalitions, over this server's limit max_budget = 200000"),
        ("syn", instance(grid=common_pb2.Grid(rows=100, cols=3)), 3000, grpc.StatusCode.RESOURCE_EXHAUSTED,
         "side of 100, over this server's limit max_grid_side = 32"),
        ("syn", instance(grid=common_pb2.Grid(rows=30, cols=3)), 3000, grpc.StatusCode.INVALID_ARGUMENT,
         "target 'syn' refused the instance: the patch grid 30x3 is larger"),
        ("syn", instance(family="nope"), 3000, grpc.StatusCode.INVALID_ARGUMENT, "unknown game family"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(service, target, inst, budget, code, message):
    _, _, stub = service
    with pytest.raises(grpc.RpcError) as err:
        explain(stub, target=target, inst=inst, budget=budget)
    assert err.value.code() == code
    assert message in err.value.details()
    assert explain(stub, budget=500).evaluations <= 500


def test_bad_method_is_invalid_argument(service):
    _, _, stub = service
    with pytest.raises(grpc.RpcError) as err:
        explain(stub, method="magic")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "method must be one of" in err.value.details()


def test_nan_from_an_adapter_is_a_clear_error():
    with adapters(NaNBackend()) as (a,), explainer({"bad": [a.address]}) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            explain(stub, target="bad")
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "target 'bad' returned NaN or infinity" in err.value.details()


def test_budget_zero_is_the_servers_default(service):
    _, _, stub = service
    exp = explain(stub, budget=0)
    assert exp.budget == Limits().default_budget and exp.evaluations <= Limits().default_budget


def test_image_pixel_and_concurrency_limits():
    limits = Limits(max_image_pixels=500, max_concurrent_explanations=1, max_queued_explanations=0)
    with adapters(SlowBackend(0.05)) as (a,), explainer({"syn": [a.address]}, limits=limits, max_batch=64) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            explain(stub, inst=instance(image=png(32, 24)))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit max_image_pixels = 500" in err.value.details()
        small = instance(image=png(20, 20))
        first = stub.Explain(explainer_pb2.ExplainRequest(target="syn", instance=small, budget=3000), timeout=60)
        next(first)
        with pytest.raises(grpc.RpcError) as err:
            explain(stub, inst=small, budget=100)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "the server is busy" in err.value.details()
        first.cancel()


def forward_passes(adapter):
    return adapter.registry.get_sample_value("multishap_adapter_forward_passes_total") or 0.0


def settles(adapter, wait=0.5):
    """True when the adapter's forward-pass counter stops growing."""
    time.sleep(wait)
    before = forward_passes(adapter)
    time.sleep(wait)
    return forward_passes(adapter) == before


def test_deadline_stops_scoring():
    with adapters(SlowBackend(0.02)) as (a,), explainer({"syn": [a.address]}, max_batch=32, max_in_flight=2) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            explain(stub, budget=50_000, timeout=0.6)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert forward_passes(a) > 0
        assert settles(a)


def test_cancel_stops_scoring():
    with adapters(SlowBackend(0.02)) as (a,), explainer({"syn": [a.address]}, max_batch=32, max_in_flight=2) as (_, stub, _):
        call = stub.Explain(explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="kernel",
                                                         budget=50_000), timeout=60)
        next(call)
        call.cancel()
        assert settles(a)
        assert 0 < forward_passes(a) < 50_000


def test_killed_replica_mid_explanation_gives_the_same_phi():
    with adapters(SlowBackend(0.01), SlowBackend(0.01)) as (a, b):
        with explainer({"syn": [a.address, b.address]}, max_batch=64, max_in_flight=2) as (_, stub, _):
            call = stub.Explain(explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="kernel",
                                                             budget=6000, seed=2), timeout=60)
            events = [next(call)]
            b.stop(None)
            events += list(call)
            phi = matrix_from_proto(events[-1].explanation.phi)
            assert np.array_equal(phi, library_phi(budget=6000, seed=2))
            assert forward_passes(a) > 0 and forward_passes(b) > 0


def test_all_replicas_down_is_unavailable():
    with adapters(SyntheticBackend()) as (a,):
        address = a.address
    with explainer({"syn": [address]}) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            explain(stub)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "target 'syn' is unavailable: none of its 1 replicas answered" in err.value.details()
        assert address not in err.value.details()


def test_faithfulness_rpc_matches_the_library(service):
    from multishap.service.math.attributions import multishap_scores
    from multishap.service.math.faithfulness import synergistic_faithfulness

    _, _, stub = service
    a, b = np.linspace(0, 1, M), np.linspace(1, 0, N)
    request = explainer_pb2.FaithfulnessRequest(target="syn", instance=instance(), patch_scores=a, token_scores=b,
                                                macro_game=True)
    result = list(stub.Faithfulness(request, timeout=60))[-1].result
    expected = synergistic_faithfulness(make_game("mlp", M, N, 3), M, N, a, b)
    assert result.f_syn == expected.f_syn and result.f_syn_raw == expected.f_syn_raw
    assert len(result.macro_per_step) == 11 and list(result.tokens) == TEXT.split()
    built_in = list(stub.Faithfulness(explainer_pb2.FaithfulnessRequest(target="syn", instance=instance(),
                                                                        budget=2000), timeout=60))[-1].result
    a, b = multishap_scores(estimate_interactions(make_game("mlp", M, N, 3), M, N, budget=2000, seed=0).phi)
    assert list(built_in.patch_scores) == a.tolist() and list(built_in.token_scores) == b.tolist()
    assert built_in.f_syn == synergistic_faithfulness(make_game("mlp", M, N, 3), M, N, a, b).f_syn
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Faithfulness(explainer_pb2.FaithfulnessRequest(target="syn", instance=instance(),
                                                                 patch_scores=[1.0], token_scores=b), timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the 3x3 grid has 9 patches, but the request gives 1 patch scores" in err.value.details()
