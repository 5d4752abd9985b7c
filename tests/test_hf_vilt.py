"""The ViLT-style VQA kind: answer logits of masked inputs, clear errors, served over gRPC."""

import grpc
import numpy as np
import pytest

from images import png
from multishap.adapters.instances import decode_instance
from multishap.adapters.hf import load_backend
from multishap.adapters.server import serve_adapter
from multishap.service.rpc.errors import InvalidArgument
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from hf_models import tiny_vilt

    return str(tiny_vilt(tmp_path_factory.mktemp("vilt")))


def instance(text="what animal is on the couch", target="cat"):
    return common_pb2.Instance(image=png(48, 40), text=text, target=target, grid=common_pb2.Grid(rows=2, cols=2))


def test_scores_are_answer_logits_that_depend_on_image_and_text(checkpoint):
    backend = load_backend("vilt", checkpoint)
    prep = backend.prepare(decode_instance(instance(), 10**8))
    assert prep.tokens == ["what", "animal", "is", "on", "the", "couch"]
    masks = np.random.default_rng(0).random((40, prep.num_players)) < 0.5
    logits = backend.forward(prep, masks)
    assert logits.shape == (40,) and np.isfinite(logits).all() and logits.std() > 0
    backend.micro_batch = 7
    np.testing.assert_allclose(backend.forward(prep, masks), logits, atol=1e-5)
    probabilities = load_backend("vilt", checkpoint, score="probability").forward(prep, masks)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), atol=1e-5)


@pytest.mark.parametrize("inst, message", [
    (instance(target="giraffe"), "the target answer 'giraffe' is not one of the model's 4 answers"),
    (instance(text="why " * 50), "this model reads at most 40"),
])
def test_bad_instances(checkpoint, inst, message):
    with pytest.raises(InvalidArgument, match=message):
        load_backend("vilt", checkpoint).prepare(decode_instance(inst, 10**8))


def test_served_over_grpc(checkpoint):
    backend = load_backend("vilt", checkpoint)
    running, _ = serve_adapter(backend)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = scorer_pb2_grpc.ScorerStub(channel)
            players = stub.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=30)
            assert not players.factorised and players.score_semantics == "logit of the target answer"
            masks = np.ones((3, 10), dtype=bool)
            masks[1, :4] = False
            masks[2, 4:] = False
            reply = stub.Score(scorer_pb2.ScoreRequest(instance=instance(), num_players=10, num_coalitions=3,
                                                       coalitions=pack_coalitions(masks)), timeout=30)
            values = unpack_values(reply.values, 3)
            prep = backend.prepare(decode_instance(instance(), 10**8))
            np.testing.assert_allclose(values, backend.forward(prep, masks), atol=1e-6)
            with pytest.raises(grpc.RpcError) as err:
                stub.Describe(scorer_pb2.DescribeRequest(instance=instance(target="zebra")), timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'zebra'" in err.value.details()
    finally:
        running.stop(None)
