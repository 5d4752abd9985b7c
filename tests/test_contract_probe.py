"""Hostile-client and hostile-adapter probes of the cost-aware Scorer contract, on loopback.

Each test pins one guarantee of ScoreProduct, instance digests, Describe's costs and preferences,
or Explain's budget_unit / target_stderr; the ones marked "fails today" found a defect (see the
test's docstring for the request that shows it).
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.explainer.targets import CallControl, Target
from multishap.service.math.games import make_game
from multishap.service.rpc.config import Limits, TargetConfig
from multishap.service.rpc.convert import matrix_from_proto
from multishap.service.rpc.errors import DeadlineExceeded
from multishap.service.rpc.wire import pack_coalitions
from multishap.v1 import common_pb2, explainer_pb2, scorer_pb2
from servers import TEXT, PreferringBackend, adapter, explainer, instance

M, N = 9, len(TEXT.split())
ROWS = np.random.default_rng(0).random((40, M + N)) < 0.5


def refused(err: grpc.RpcError) -> bool:
    """Whether the explainer refused or failed the request on purpose, with a sentence: anything but the
    INTERNAL "internal error; the server log has the details" of an uncaught exception (a TargetFailed is
    INTERNAL too, but says what went wrong)."""
    return not (err.code() == grpc.StatusCode.INTERNAL and err.details().startswith("internal error"))


def digest_requests(running, outcome: str) -> float:
    return running.registry.get_sample_value("multishap_adapter_digest_requests_total", {"outcome": outcome}) or 0.0


def small_instance() -> common_pb2.Instance:
    """A 2x2 grid and 3 tokens: 7 players, 128 coalitions in all."""
    return instance(text="a cat sat", grid=common_pb2.Grid(rows=2, cols=2))


# --- Describe's preferred timeout -------------------------------------------------------------------


@pytest.mark.parametrize("preferred", [1e10, 1e300])
def test_a_huge_preferred_timeout_does_not_make_every_call_time_out(preferred):
    """A defect the contract probe found (now fixed), described as it was: service/explainer/targets.py call_sizing takes any finite preferred_timeout_seconds as
    the per-call timeout; gRPC turns a timeout past ~7.4e9 s into a deadline already passed, so with no
    caller deadline every Score call fails at once with DEADLINE_EXCEEDED (an adapter meaning "no limit"
    breaks every explanation that has no deadline)."""
    with adapter(PreferringBackend(timeout=preferred)) as (running, _, _):
        target = Target(TargetConfig("syn", (running.address,), timeout_s=30.0))
        players = target.describe(instance(), CallControl())
        value_fn = target.value_function(instance(), M + N, CallControl(), players=players)
        try:
            np.testing.assert_array_equal(value_fn(ROWS), make_game("mlp", M, N, 3)(ROWS))
        finally:
            value_fn.close()
            target.close()


def test_a_preferred_timeout_never_outlives_the_callers_deadline():
    """An adapter preferring a day per call, answering in 3 s, is cut off at the explanation's 0.3 s deadline."""
    with adapter(PreferringBackend(timeout=86_400.0, delay=3.0)) as (running, _, stub):
        players = stub.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=10)
        target = Target(TargetConfig("syn", (running.address,), timeout_s=0.1))
        value_fn = target.value_function(instance(), M + N, CallControl(time.monotonic() + 0.3), players=players)
        start = time.monotonic()
        try:
            with pytest.raises(DeadlineExceeded):
                value_fn(ROWS[:4])
        finally:
            value_fn.close()
            target.close()
        assert time.monotonic() - start < 2.0


# --- Describe's costs and Explain's budget_unit ------------------------------------------------------


def test_hostile_tiny_costs_cannot_buy_more_coalitions_than_max_coalitions():
    """An adapter describing coalition = 1e-9 would let a budget of 50 in BUDGET_UNIT_COST buy 5e10
    coalitions (found: 800k scored in 20 s on a 4x4 grid); Limits.max_coalitions bounds the coalitions one
    explanation scores whatever the prices."""
    backend = PreferringBackend(costs=scorer_pb2.Costs(unit="credits", coalition=1e-9))
    request = explainer_pb2.ExplainRequest(target="syn", instance=small_instance(), method="kernel", budget=50,
                                           seed=1, budget_unit=explainer_pb2.BUDGET_UNIT_COST)
    with adapter(backend) as (running, _, _), \
            explainer({"syn": [running.address]}, limits=Limits(max_coalitions=60)) as (_, stub, _):
        try:
            list(stub.Explain(request, timeout=30))
        except grpc.RpcError as err:
            assert refused(err), err.details()
    assert sum(backend.batches) <= 60


@pytest.mark.parametrize("price", [100.0, 60.0])
def test_a_cost_budget_that_cannot_pay_for_the_anchors_is_refused_not_an_internal_error(price):
    """A defect the contract probe found (now fixed), described as it was: With BUDGET_UNIT_COST at an honest target charging ``price`` per coalition (cents, say),
    a budget of 200 passes estimate_interactions' "too small" check (it compares the cost budget with a
    count of coalitions), then the 4 anchors' registration raises BudgetExhausted
    (service/math/estimators/coalitions.py register), which nothing catches: the caller gets INTERNAL."""
    backend = PreferringBackend(costs=scorer_pb2.Costs(unit="cents", coalition=price))
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="multishap", budget=200, seed=1,
                                           budget_unit=explainer_pb2.BUDGET_UNIT_COST)
    with adapter(backend) as (running, _, _), explainer({"syn": [running.address]}) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Explain(request, timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "budget" in err.value.details()
    assert sum(backend.batches) == 0


def test_a_cost_budget_below_one_step_is_refused_not_answered_from_the_anchors_alone():
    """A defect the contract probe found (now fixed), described as it was: At 10 cents a coalition, a budget of 200 cents buys 20 coalitions, fewer than the 74
    one step of multishap needs (estimator.min_budget); the "too small" check in estimate_interactions reads
    200 as coalitions, and the explanation comes back OK with only the 4 anchors scored and an all-zero Φ
    that no step measured."""
    backend = PreferringBackend(costs=scorer_pb2.Costs(unit="cents", coalition=10.0))
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="multishap", budget=200, seed=1,
                                           budget_unit=explainer_pb2.BUDGET_UNIT_COST)
    with adapter(backend) as (running, _, _), explainer({"syn": [running.address]}) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Explain(request, timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "too small for one step of method 'multishap'" in err.value.details() and "cents" in err.value.details()
    assert sum(backend.batches) == 0


def test_hostile_huge_costs_do_not_report_an_infinite_cost():
    """A defect the contract probe found (now fixed), described as it was: cost_model_of accepts coalition = 1e308 (finite); 44 coalitions cost inf, which the
    Explanation reports and the multishap_cost_units counter keeps for good (jobs.py inc(meter.spent))."""
    backend = PreferringBackend(costs=scorer_pb2.Costs(unit="credits", coalition=1e308))
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), budget=300, seed=1)
    with adapter(backend) as (running, _, _), explainer({"syn": [running.address]}) as (server, stub, _):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Explain(request, timeout=30))
        spent = server.registry.get_sample_value("multishap_cost_units_total", {"target": "syn", "unit": "credits"})
    assert refused(err.value) and "invalid costs" in err.value.details()
    assert spent is None


def test_an_adapters_cost_unit_reaches_clients_bounded():
    """A defect the contract probe found (now fixed), described as it was: Players.costs.unit is relayed unclipped into every Progress event, the Explanation and
    the multishap_cost_units Prometheus label (service/explainer/jobs.py, streaming.py): an adapter's
    100 000-character unit string is sent back 100 000 characters at a time."""
    backend = PreferringBackend(costs=scorer_pb2.Costs(unit="u" * 100_000, coalition=1.0))
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), budget=300, seed=1)
    with adapter(backend) as (running, _, _), explainer({"syn": [running.address]}) as (_, stub, _):
        try:
            events = list(stub.Explain(request, timeout=30))
        except grpc.RpcError as err:
            assert refused(err) and len(err.details()) <= 1000
            return
    units = [e.progress.cost_unit for e in events if e.HasField("progress")] + [events[-1].explanation.cost_unit]
    assert max(len(u) for u in units) <= 256


# --- Instance digests --------------------------------------------------------------------------------


def test_a_replica_that_cannot_hold_the_instance_is_not_asked_by_digest_on_every_call():
    """A defect the contract probe found (now fixed), described as it was: RemoteValueFunction keeps one digest for all replicas and does not forget it when the
    instance re-sent after NOT_FOUND comes back without a digest (targets.py _request / _learn), so every
    call to a replica whose cache cannot hold the instance costs a NOT_FOUND round trip and a second
    request: here 5 of 5."""
    rows = np.random.default_rng(1).random((100, M + N)) < 0.5
    with adapter(SyntheticBackend()) as (holding, _, _), adapter(SyntheticBackend(), cache_bytes=1) as (forgetful, _, _):
        target = Target(TargetConfig("syn", (holding.address, forgetful.address), max_batch=10, max_in_flight=1))
        value_fn = target.value_function(instance(), M + N, CallControl())
        try:
            for k in range(0, 100, 10):
                np.testing.assert_array_equal(value_fn(rows[k : k + 10]), make_game("mlp", M, N, 3)(rows[k : k + 10]))
        finally:
            value_fn.close()
            target.close()
        assert digest_requests(forgetful, "miss") <= 1


def _versioned_digests(servicer) -> None:
    """A replica of a later adapter version: it names its digests "v2:<sha256>" (and reads them back)."""
    instances = servicer.instances
    plain_digest, plain_resolve = instances.digest, instances.resolve
    instances.digest = lambda prepared: "v2:" + plain_digest(prepared) if plain_digest(prepared) else ""
    instances.resolve = lambda inst, digest: plain_resolve(inst, digest.removeprefix("v2:"))


def _no_digests(servicer) -> None:
    """A replica of the adapter before digests: it names none and reads the request's instance field only
    (unset: an empty Instance, which it refuses as having no text)."""
    instances = servicer.instances
    instances.digest = lambda prepared: ""
    instances.resolve = lambda inst, digest: instances.get(inst if inst is not None else common_pb2.Instance())


@pytest.mark.parametrize("first_patch, second_patch", [(_versioned_digests, None), (None, _no_digests)],
                         ids=["a-later-version-names-v2-digests", "an-earlier-version-reads-no-digest"])
def test_a_digest_another_replica_cannot_read_makes_it_resend_the_instance(first_patch, second_patch):
    """A defect the contract probe found (now fixed), described as it was: The explainer sends the digest one replica named to every replica (targets.py
    _request) and only NOT_FOUND makes it re-send the instance; the proto says a replica that does not
    hold a digest answers NOT_FOUND, but a replica that cannot read it answers INVALID_ARGUMENT
    (adapters/instances.py resolve refuses any digest not 64 lowercase hex; an adapter from before
    digests sees a request without an instance), which the explainer passes on as "refused the
    instance". So a target whose replicas run two adapter versions - every rolling upgrade - fails every
    explanation on its second call."""
    with adapter(SyntheticBackend()) as (first, first_servicer, _), \
            adapter(SyntheticBackend()) as (second, second_servicer, _):
        for patch, servicer in [(first_patch, first_servicer), (second_patch, second_servicer)]:
            if patch is not None:
                patch(servicer)
        target = Target(TargetConfig("syn", (first.address, second.address), max_batch=10, max_in_flight=1))
        value_fn = target.value_function(instance(), M + N, CallControl())
        try:
            for k in range(0, 40, 10):
                np.testing.assert_array_equal(value_fn(ROWS[k : k + 10]), make_game("mlp", M, N, 3)(ROWS[k : k + 10]))
        finally:
            value_fn.close()
            target.close()


def test_values_stay_exact_while_concurrent_explanations_evict_each_other():
    """Two instances on an adapter caching one: digests keep being evicted mid-flight, NOT_FOUND keeps
    coming back, and every value must still be the instance's own."""
    games = {"3": make_game("mlp", M, N, 3), "4": make_game("mlp", M, N, 4)}
    failures: list[str] = []
    with adapter(SyntheticBackend(), cache_entries=1) as (running, _, _):
        target = Target(TargetConfig("syn", (running.address,), max_batch=5, max_in_flight=4))

        def work(seed: str) -> None:
            value_fn = target.value_function(instance(seed=seed), M + N, CallControl())
            try:
                for _ in range(5):
                    if not np.array_equal(value_fn(ROWS), games[seed](ROWS)):
                        failures.append(f"seed {seed}: wrong values")
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(f"seed {seed}: {exc!r}")
            finally:
                value_fn.close()

        threads = [threading.Thread(target=work, args=(seed,)) for seed in ("3", "4", "3", "4")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        target.close()
        assert digest_requests(running, "miss") > 0  # the race did happen
    assert failures == []


def test_error_messages_do_not_echo_an_unbounded_digest():
    with adapter(SyntheticBackend()) as (_, _, stub):
        for digest in ("x" * 1_000_000, "\n" * 1000, "A" * 64):
            for call, request in [
                (stub.Score, scorer_pb2.ScoreRequest(instance_digest=digest, num_players=M + N, num_coalitions=1,
                                                     coalitions=pack_coalitions(ROWS[:1]))),
                (stub.ScoreProduct, scorer_pb2.ScoreProductRequest(
                    instance_digest=digest, num_patches=M, num_tokens=N, num_image_masks=1,
                    image_masks=pack_coalitions(ROWS[:1, :M]), num_text_masks=1,
                    text_masks=pack_coalitions(ROWS[:1, M:]))),
            ]:
                with pytest.raises(grpc.RpcError) as err:
                    call(request, timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert len(err.value.details()) <= 300


# --- Determinism ---------------------------------------------------------------------------------------


ENCODERS = scorer_pb2.Costs(unit="encoder passes", image_encode=1.0, text_encode=1.0)


@pytest.mark.parametrize("method, extra, costs", [
    ("auto", {}, None),
    ("kernel", {}, None),
    ("controlled", {"target_stderr": 0.01}, None),
    ("multishap", {"budget_unit": explainer_pb2.BUDGET_UNIT_COST}, ENCODERS),
])
def test_phi_is_bit_identical_with_digests_on_or_off_and_any_preferred_batch(method, extra, costs):
    """Same seed, same Φ: whatever the adapter's preferred batch, and whether its cache can hold the instance
    (digests on) or not (no digest is ever named, so every request carries the instance)."""
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), method=method, budget=400, seed=5, **extra)
    setups = [(PreferringBackend(costs=costs), {}), (PreferringBackend(batch=7, costs=costs), {}),
              (PreferringBackend(costs=costs), {"cache_bytes": 1})]
    phis = []
    for backend, options in setups:
        with adapter(backend, **options) as (running, _, _), \
                explainer({"syn": [running.address]}, max_batch=64, max_in_flight=3) as (_, stub, _):
            phis.append(matrix_from_proto(list(stub.Explain(request, timeout=60))[-1].explanation.phi))
        if options:
            assert digest_requests(running, "hit") == 0
        else:
            assert digest_requests(running, "hit") > 0
    for phi in phis[1:]:
        assert np.array_equal(phi, phis[0])
