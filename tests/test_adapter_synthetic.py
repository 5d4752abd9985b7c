"""The synthetic adapter as a real gRPC server on loopback, through the generated stubs."""

import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from images import png
from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.math.games import make_game
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

TEXT = "a cat on a couch"


@pytest.fixture(scope="module")
def adapter():
    running, servicer = serve_adapter(SyntheticBackend())
    channel = grpc.insecure_channel(running.address)
    yield running, scorer_pb2_grpc.ScorerStub(channel), channel
    channel.close()
    running.stop(None)


def instance(**overrides):
    fields = dict(image=png(), text=TEXT, target="cat", grid=common_pb2.Grid(rows=3, cols=3),
                  parameters={"family": "unanimity-low", "seed": "4"})
    fields.update(overrides)
    return common_pb2.Instance(**fields)


def score(stub, inst, masks, num_players=None):
    reply = stub.Score(scorer_pb2.ScoreRequest(
        instance=inst, num_players=num_players or masks.shape[1], num_coalitions=len(masks),
        coalitions=pack_coalitions(masks)), timeout=10)
    return unpack_values(reply.values, len(masks))


def test_describe_returns_the_players(adapter):
    _, stub, _ = adapter
    players = stub.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=10)
    assert list(players.tokens) == TEXT.split()
    assert (players.grid.rows, players.grid.cols) == (3, 3)
    assert players.model_id == "multishap/synthetic"


def test_score_equals_the_game_in_process_for_odd_player_counts(adapter):
    _, stub, _ = adapter
    game = make_game("unanimity-low", 9, 5, seed=4)
    masks = np.random.default_rng(0).random((300, 14)) < 0.5
    values = score(stub, instance(), masks)
    np.testing.assert_array_equal(values, game(masks))


def test_same_instance_same_answer_and_seed_from_content(adapter):
    _, stub, _ = adapter
    masks = np.random.default_rng(1).random((50, 14)) < 0.5
    plain = instance(parameters={"family": "mlp"})
    a = list(score(stub, plain, masks))
    b = list(score(stub, plain, masks))
    other = list(score(stub, instance(parameters={"family": "mlp"}, image=png(seed=9)), masks))
    assert list(a) == list(b) and list(a) != list(other)


@pytest.mark.parametrize(
    "inst, players, message",
    [
        (instance(image=b"not an image"), 14, "image could not be decoded"),
        (instance(image=b""), 14, "no image bytes"),
        (instance(grid=common_pb2.Grid(rows=0, cols=3)), 3 + 5, "at least 1 row and 1 column"),
        (instance(grid=common_pb2.Grid(rows=30, cols=3)), 90 + 5, "larger than the 32x24 image"),
        (instance(text="   "), 9, "the instance has no text"),
        (instance(parameters={"famly": "mixed"}), 14, "unknown instance parameter 'famly'; this adapter's parameters: family"),
        (instance(), 15, "9 patches and 5 tokens (14 players)"),
        (instance(parameters={"family": "nope"}), 14, "unknown game family"),
    ],
)
def test_bad_requests_are_invalid_argument_and_server_keeps_serving(adapter, inst, players, message):
    running, stub, _ = adapter
    labels = {"method": "Score", "code": "INVALID_ARGUMENT"}
    before = running.registry.get_sample_value("multishap_rpc_errors_total", labels) or 0.0
    with pytest.raises(grpc.RpcError) as err:
        score(stub, inst, np.ones((2, players), dtype=bool))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert running.registry.get_sample_value("multishap_rpc_errors_total", labels) == before + 1
    assert message in err.value.details()
    assert len(score(stub, instance(), np.ones((2, 14), dtype=bool))) == 2


def test_truncated_coalitions_are_refused(adapter):
    _, stub, _ = adapter
    request = scorer_pb2.ScoreRequest(instance=instance(), num_players=14, num_coalitions=3,
                                      coalitions=pack_coalitions(np.ones((2, 14), dtype=bool)))
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3 coalitions of 14 players need 6" in err.value.details()


def test_health_reflection_and_metrics(adapter):
    running, stub, channel = adapter
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="multishap.v1.Scorer"), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert "multishap.v1.Scorer" in names and "grpc.health.v1.Health" in names
    before = running.registry.get_sample_value("multishap_adapter_forward_passes_total")
    score(stub, instance(), np.ones((7, 14), dtype=bool))
    text = urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read().decode()
    after = running.registry.get_sample_value("multishap_adapter_forward_passes_total")
    assert after == before + 7
    assert "multishap_adapter_forward_passes_total" in text
