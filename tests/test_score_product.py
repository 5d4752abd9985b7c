"""ScoreProduct, Describe's costs and preferences, and the explainer's product and call sizing, on loopback.

The synthetic adapter answers a product design by scoring its expanded coalitions, so
ScoreProduct must equal Score on them bit for bit; its refusals come before any scoring.
"""

import time

import grpc
import numpy as np
import pytest

from multishap.adapters.openai import OpenAIBackend
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.explainer.targets import CallControl, Target, call_sizing, cost_model_of
from multishap.service.math.costs import CostModel, product_rows
from multishap.service.math.games import make_game
from multishap.service.rpc.config import Limits, TargetConfig
from multishap.service.math.validation import ArgumentError
from multishap.service.rpc.errors import DeadlineExceeded, TargetFailed
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import explainer_pb2, scorer_pb2
from openai_env import instance as openai_instance, openai_adapter, options, simulator
from servers import TEXT, NaNBackend, PreferringBackend, adapter, explainer, instance

M, N = 9, len(TEXT.split())
MAX_BUDGET = 1000


@pytest.fixture(scope="module")
def syn():
    with adapter(SyntheticBackend(), limits=Limits(max_budget=MAX_BUDGET)) as running:
        yield running


def masks(seed: int, rows: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, width)) < 0.5


def product_request(inst=None, images=None, texts=None, **fields) -> scorer_pb2.ScoreProductRequest:
    images = masks(1, 7, M) if images is None else images
    texts = masks(2, 5, N) if texts is None else texts
    base = dict(instance=inst or instance(), num_patches=images.shape[1], num_tokens=texts.shape[1],
                num_image_masks=len(images), image_masks=pack_coalitions(images), num_text_masks=len(texts),
                text_masks=pack_coalitions(texts))
    base.update(fields)
    return scorer_pb2.ScoreProductRequest(**base)


def forward_passes(running) -> float:
    return running.registry.get_sample_value("multishap_adapter_forward_passes_total") or 0.0


@pytest.mark.parametrize("family", ["mlp", "unanimity-low"])
def test_score_product_equals_score_on_the_expanded_coalitions(syn, family):
    _, _, stub = syn
    inst = instance(family)
    images, texts = masks(3, 7, M), masks(4, 5, N)
    product = stub.ScoreProduct(product_request(inst, images, texts), timeout=10)
    rows = product_rows(images, texts)
    plain = stub.Score(scorer_pb2.ScoreRequest(instance=inst, num_players=M + N, num_coalitions=len(rows),
                                               coalitions=pack_coalitions(rows)), timeout=10)
    assert product.values == plain.values
    np.testing.assert_array_equal(unpack_values(product.values, 35), make_game(family, M, N, 3)(rows))
    assert product.instance_digest == plain.instance_digest != ""


def test_score_product_counts_its_coalitions_and_a_dry_run_scores_nothing(syn):
    running, _, stub = syn
    before = forward_passes(running)
    products = running.registry.get_sample_value("multishap_adapter_score_product_requests_total") or 0.0
    stub.ScoreProduct(product_request(), timeout=10)
    assert forward_passes(running) == before + 35
    assert running.registry.get_sample_value("multishap_adapter_score_product_requests_total") == products + 1
    dry = stub.ScoreProduct(product_request(dry_run=True), timeout=10)
    assert unpack_values(dry.values, 35).tolist() == [0.0] * 35 and forward_passes(running) == before + 35


@pytest.mark.parametrize("fields, code, phrase", [
    (dict(num_image_masks=0, image_masks=b""), grpc.StatusCode.INVALID_ARGUMENT, "no image mask"),
    (dict(num_text_masks=0, text_masks=b""), grpc.StatusCode.INVALID_ARGUMENT, "no text mask"),
    (dict(num_image_masks=8), grpc.StatusCode.INVALID_ARGUMENT, "image_masks hold 14 bytes but 8 image masks"),
    (dict(text_masks=b"\x00" * 4), grpc.StatusCode.INVALID_ARGUMENT, "text_masks hold 4 bytes but 5 text masks"),
    (dict(num_patches=0), grpc.StatusCode.INVALID_ARGUMENT, "num_patches must be at least 1"),
    (dict(num_patches=16), grpc.StatusCode.INVALID_ARGUMENT, "has 9 patches and 6 tokens, but the request's masks "
                                                              "have 16 patches"),
    (dict(num_tokens=7), grpc.StatusCode.INVALID_ARGUMENT, "7 tokens (num_tokens)"),
    (dict(instance=None), grpc.StatusCode.INVALID_ARGUMENT, "neither an instance nor an instance_digest"),
    (dict(instance=None, instance_digest="cafe"), grpc.StatusCode.INVALID_ARGUMENT, "64 lowercase hexadecimal"),
    (dict(instance=None, instance_digest="0" * 64), grpc.StatusCode.NOT_FOUND, "no longer holds instance 000000000000;"),
])
def test_score_product_refusals_come_before_any_scoring(syn, fields, code, phrase):
    running, _, stub = syn
    before = forward_passes(running)
    request = product_request()
    for name, value in fields.items():
        if value is None:
            request.ClearField(name)
        else:
            setattr(request, name, value)
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreProduct(request, timeout=10)
    assert err.value.code() == code and phrase in err.value.details()
    assert forward_passes(running) == before


def test_image_masks_times_text_masks_count_against_the_coalition_limit(syn):
    running, _, stub = syn
    before = forward_passes(running)
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreProduct(product_request(images=masks(5, 11, M), texts=masks(6, 91, N)), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1001 coalitions" in err.value.details() and f"max_budget = {MAX_BUDGET}" in err.value.details()
    assert forward_passes(running) == before
    stub.ScoreProduct(product_request(images=masks(5, 10, M), texts=masks(6, 100, N)), timeout=10)


def test_describe_gives_costs_and_preferences():
    encoders = scorer_pb2.Costs(unit="encoder passes", image_encode=1.0, text_encode=1.0)
    with adapter(SyntheticBackend()) as (_, _, plain), \
            adapter(PreferringBackend(batch=16, timeout=7.5, costs=encoders)) as (_, _, preferring):
        default = plain.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=10)
        assert (default.costs.unit, default.costs.coalition) == ("coalitions", 1.0)
        assert (default.preferred_batch, default.preferred_timeout_seconds) == (0, 0.0)
        own = preferring.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=10)
        assert own.costs == encoders and (own.preferred_batch, own.preferred_timeout_seconds) == (16, 7.5)
    assert cost_model_of(default, "syn") == CostModel()
    assert cost_model_of(own, "syn") == CostModel("encoder passes", 1.0, 1.0, 0.0)
    assert cost_model_of(None, "syn") == CostModel()


@pytest.mark.parametrize("costs", [dict(unit="x"), dict(unit="x", coalition=-1.0),
                                   dict(unit="x", image_encode=float("nan"), coalition=1.0)])
def test_invalid_costs_are_a_target_failure(costs):
    with pytest.raises(TargetFailed, match="described invalid costs"):
        cost_model_of(scorer_pb2.Players(costs=scorer_pb2.Costs(**costs)), "syn")


def test_the_openai_adapter_counts_requests(tmp_path):
    inst = openai_instance()
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite")) as (_, backend, stub):
        players = stub.Describe(scorer_pb2.DescribeRequest(instance=inst), timeout=10)
    assert isinstance(backend, OpenAIBackend)
    assert (players.costs.unit, players.costs.coalition, players.costs.image_encode) == ("requests", 1.0, 0.0)
    assert cost_model_of(players, "gpt") == CostModel("requests", 0.0, 0.0, 1.0)


@pytest.mark.parametrize("a, b, batch, calls", [(5, 4, 2, 3), (3, 10, 7, 1), (10, 2, 3, 4)])
def test_remote_product_equals_the_expanded_value_function(a, b, batch, calls):
    """A product is split into calls of at most ``batch`` image masks (what a call costs is its encodes)."""
    backend = PreferringBackend()
    with adapter(backend) as (running, _, _):
        target = Target(TargetConfig("syn", (running.address,), max_batch=batch, max_in_flight=2))
        scored = []
        value_fn = target.value_function(instance(), M + N, CallControl(), on_scored=scored.append)
        try:
            images, texts = masks(7, a, M), masks(8, b, N)
            values = value_fn.product(images, texts)
            assert values.shape == (a, b)
            np.testing.assert_array_equal(values, value_fn(product_rows(images, texts)).reshape(a, b))
            np.testing.assert_array_equal(values.ravel(), make_game("mlp", M, N, 3)(product_rows(images, texts)))
            with pytest.raises(ArgumentError, match="m \\+ n = 15 players"):
                value_fn.product(images[:, :-1], texts)
        finally:
            value_fn.close()
            target.close()
    assert len(backend.batches[:calls]) == calls and max(backend.batches[:calls]) <= batch * b
    assert sum(backend.batches[:calls]) == a * b and sum(scored[:calls]) == a * b


def test_call_sizing_follows_the_adapters_preferences_within_the_configuration():
    config = TargetConfig("syn", ("x:1",), timeout_s=30.0, max_batch=1024)
    unset = call_sizing(config, None)
    assert unset == call_sizing(config, scorer_pb2.Players()) and (unset.batch, unset.timeout_s) == (1024, 30.0)
    small = call_sizing(config, scorer_pb2.Players(preferred_batch=100, preferred_timeout_seconds=120.0))
    assert (small.batch, small.timeout_s) == (100, 120.0)
    large = call_sizing(config, scorer_pb2.Players(preferred_batch=5000, preferred_timeout_seconds=2.0))
    assert (large.batch, large.timeout_s) == (1024, 30.0)
    odd = call_sizing(config, scorer_pb2.Players(preferred_timeout_seconds=float("inf")))
    assert odd.timeout_s == 30.0
    # The preferred timeout never passes the explanation's deadline.
    assert CallControl(deadline=time.monotonic() + 2.0).timeout(small.timeout_s) <= 2.0


def test_score_calls_take_the_preferred_batch():
    backend = PreferringBackend(batch=16)
    with adapter(backend) as (running, _, _):
        target = Target(TargetConfig("syn", (running.address,), max_batch=64, max_in_flight=2))
        players = target.describe(instance(), CallControl())
        preferring = target.value_function(instance(), M + N, CallControl(), players=players)
        configured = target.value_function(instance(), M + N, CallControl())
        try:
            rows = masks(9, 100, M + N)
            np.testing.assert_array_equal(preferring(rows), configured(rows))
        finally:
            preferring.close()
            configured.close()
            target.close()
    assert sorted(backend.batches[:7]) == [4] + [16] * 6
    assert sorted(backend.batches[7:]) == [36, 64]


def test_a_slow_adapter_gets_its_preferred_timeout_but_not_past_the_deadline():
    with adapter(PreferringBackend(timeout=5.0, delay=0.3)) as (running, _, stub):
        players = stub.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=10)
        target = Target(TargetConfig("syn", (running.address,), timeout_s=0.1))
        rows = masks(10, 8, M + N)
        for given, deadline, answers in [(players, None, True), (None, None, False), (players, 0.15, False)]:
            control = CallControl(None if deadline is None else time.monotonic() + deadline)
            value_fn = target.value_function(instance(), M + N, control, players=given)
            try:
                if answers:
                    assert value_fn(rows).shape == (8,)
                else:
                    with pytest.raises(DeadlineExceeded):
                        value_fn(rows)
            finally:
                value_fn.close()
        target.close()


def test_an_explanation_scores_in_the_adapters_preferred_batch():
    backend = PreferringBackend(batch=16)
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="kernel", budget=600, seed=1)
    with adapter(backend) as (running, _, _), explainer({"syn": [running.address]}, max_batch=128) as (_, stub, _):
        reply = list(stub.Explain(request, timeout=60))[-1].explanation
    assert backend.batches and max(backend.batches) <= 16 < sum(backend.batches)
    assert sum(backend.batches) == reply.evaluations


def test_a_product_with_bad_scores_fails_and_the_usage_of_a_paid_target_adds_up(tmp_path):
    with adapter(NaNBackend()) as (running, _, _):
        target = Target(TargetConfig("nan", (running.address,), max_batch=8))
        value_fn = target.value_function(instance(), M + N, CallControl())
        try:
            with pytest.raises(TargetFailed, match="NaN or infinity"):
                value_fn.product(masks(11, 4, M), masks(12, 6, N))
        finally:
            value_fn.close()
            target.close()
    inst = openai_instance()
    m, n = inst.grid.rows * inst.grid.cols, len(inst.text.split())
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite")) as (running, _, stub):
        target = Target(TargetConfig("gpt", (running.address,), max_batch=4))
        players = target.describe(inst, CallControl())
        scored = []
        value_fn = target.value_function(inst, m + n, CallControl(), on_scored=scored.append, players=players)
        try:
            images, texts = masks(13, 3, m), masks(14, 2, n)
            values = value_fn.product(images, texts)
            np.testing.assert_array_equal(values.ravel(), value_fn(product_rows(images, texts)))
        finally:
            value_fn.close()
            target.close()
    assert value_fn.costs == CostModel("requests", 0.0, 0.0, 1.0) and sum(scored) == 12
    assert value_fn.usage.requests + value_fn.usage.cache_hits == 12
