"""Instance digests on loopback: an adapter names the prepared instance, a request may name it back,
and the explainer's value function switches to digests and re-sends the instance when a replica has
lost it, so an explanation's Φ does not change."""

import grpc
import numpy as np
import pytest

from multishap.adapters.instances import content_key
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.explainer.targets import CallControl, Target
from multishap.service.math.costs import product_rows
from multishap.service.math.games import make_game
from multishap.service.rpc.config import TargetConfig
from multishap.service.rpc.convert import matrix_from_proto
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import explainer_pb2, scorer_pb2
from servers import TEXT, adapter, adapters, explainer, instance

M, N = 9, len(TEXT.split())
ROWS = np.random.default_rng(0).random((40, M + N)) < 0.5


def score_request(inst=None, digest: str = "", rows: np.ndarray = ROWS) -> scorer_pb2.ScoreRequest:
    return scorer_pb2.ScoreRequest(instance=inst, instance_digest=digest, num_players=M + N,
                                   num_coalitions=len(rows), coalitions=pack_coalitions(rows))


def digest_requests(running, outcome: str) -> float:
    return running.registry.get_sample_value("multishap_adapter_digest_requests_total", {"outcome": outcome}) or 0.0


def test_a_reply_names_the_instance_and_the_name_gets_the_same_values():
    inst = instance()
    with adapter(SyntheticBackend()) as (running, _, stub):
        first = stub.Score(score_request(inst), timeout=10)
        assert first.instance_digest == content_key(inst)
        again = stub.Score(score_request(digest=first.instance_digest), timeout=10)
        assert again.values == first.values and again.instance_digest == first.instance_digest
        # With both, the instance is used: an unknown digest beside it does not matter.
        both = stub.Score(score_request(inst, digest="0" * 64), timeout=10)
        assert both.values == first.values
        assert digest_requests(running, "hit") == 1 and digest_requests(running, "miss") == 0
    np.testing.assert_array_equal(unpack_values(again.values, len(ROWS)), make_game("mlp", M, N, 3)(ROWS))


@pytest.mark.parametrize("digest, phrase", [
    ("", "neither an instance nor an instance_digest"),
    ("abc", "64 lowercase hexadecimal characters an earlier ScoreResponse returned; got 'abc'"),
    ("A" * 64, "64 lowercase hexadecimal"),
    ("0" * 65, "64 lowercase hexadecimal"),
    ("g" * 64, "64 lowercase hexadecimal"),
])
def test_a_request_without_a_usable_instance_is_refused(digest, phrase):
    with adapter(SyntheticBackend()) as (_, _, stub):
        for inst in (None, instance()) if digest else (None,):
            with pytest.raises(grpc.RpcError) as err:
                stub.Score(score_request(inst, digest=digest), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and phrase in err.value.details()


def test_an_evicted_instance_or_a_fresh_replica_answers_not_found():
    inst, other = instance(), instance(seed="4")
    with adapter(SyntheticBackend(), cache_entries=1) as (running, _, stub), \
            adapter(SyntheticBackend()) as (fresh, _, fresh_stub):
        digest = stub.Score(score_request(inst), timeout=10).instance_digest
        for who, at in [(fresh, fresh_stub), (running, stub)]:
            if who is running:
                stub.Score(score_request(other), timeout=10)  # evicts inst: the cache holds one entry
            with pytest.raises(grpc.RpcError) as err:
                at.Score(score_request(digest=digest), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert err.value.details() == (f"this adapter no longer holds instance {digest[:12]}; "
                                           "send the instance again")
            assert digest_requests(who, "miss") == 1


def test_an_instance_the_cache_cannot_hold_gets_no_digest():
    with adapter(SyntheticBackend(), cache_bytes=1) as (_, _, stub):
        reply = stub.Score(score_request(instance()), timeout=10)
    assert reply.instance_digest == "" and len(reply.values) == 8 * len(ROWS)


def test_the_value_function_sends_digests_and_resends_the_instance_to_a_replica_without_it():
    game = make_game("mlp", M, N, 3)
    rows = np.random.default_rng(1).random((60, M + N)) < 0.5
    with adapters(SyntheticBackend(), SyntheticBackend()) as (a, b):
        target = Target(TargetConfig("syn", (a.address, b.address), max_batch=10, max_in_flight=1))
        value_fn = target.value_function(instance(), M + N, CallControl())
        try:
            # Six calls in turn: a and b with the instance (each names its digest), then a, b, a, b
            # each by its own digest: a replica is never asked by a digest another one named.
            for k in range(0, 60, 10):
                np.testing.assert_array_equal(value_fn(rows[k : k + 10]), game(rows[k : k + 10]))
        finally:
            value_fn.close()
            target.close()
        assert digest_requests(b, "miss") == 0 and digest_requests(a, "miss") == 0
        assert digest_requests(a, "hit") == digest_requests(b, "hit") == 2


def test_digests_off_always_send_the_instance_and_a_cleared_cache_is_transparent():
    game = make_game("mlp", M, N, 3)
    with adapter(SyntheticBackend(), cache_entries=1) as (running, _, stub):
        target = Target(TargetConfig("syn", (running.address,), max_batch=16, max_in_flight=1))
        plain = target.value_function(instance(), M + N, CallControl(), send_digests=False)
        digests = target.value_function(instance(), M + N, CallControl())
        try:
            np.testing.assert_array_equal(plain(ROWS), game(ROWS))
            np.testing.assert_array_equal(plain(ROWS), game(ROWS))
            assert digest_requests(running, "hit") == 0
            np.testing.assert_array_equal(digests(ROWS), game(ROWS))
            stub.Score(score_request(instance(seed="4")), timeout=10)  # evicts the instance
            np.testing.assert_array_equal(digests(ROWS), game(ROWS))
            np.testing.assert_array_equal(digests.product(ROWS[:4, :M], ROWS[:5, M:]).ravel(),
                                          game(product_rows(ROWS[:4, :M], ROWS[:5, M:])))
        finally:
            plain.close()
            digests.close()
            target.close()
        assert digest_requests(running, "miss") == 1 and digest_requests(running, "hit") >= 3


def test_an_explanation_over_a_replica_that_cannot_hold_the_instance_keeps_its_phi():
    request = explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="kernel", budget=2000, seed=2)

    def phi(stub) -> np.ndarray:
        return matrix_from_proto(list(stub.Explain(request, timeout=60))[-1].explanation.phi)

    with adapters(SyntheticBackend()) as (single,), adapter(SyntheticBackend()) as (holding, _, _), \
            adapter(SyntheticBackend(), cache_bytes=1) as (forgetful, _, _):
        with explainer({"syn": [single.address]}, max_batch=128) as (_, stub, _):
            expected = phi(stub)
        with explainer({"syn": [holding.address, forgetful.address]}, max_batch=128) as (_, stub, _):
            assert np.array_equal(phi(stub), expected)
        # The replica that cannot hold the instance names no digest, so it is never asked by one.
        assert digest_requests(forgetful, "miss") == 0 and digest_requests(holding, "hit") >= 1
