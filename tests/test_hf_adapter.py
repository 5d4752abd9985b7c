"""The Hugging Face adapter: masking, factorisation, real models, served over gRPC."""

import grpc
import numpy as np
import pytest
import torch

from images import png
from multishap.adapters.instances import decode_instance
from multishap.adapters.hf import load_backend
from multishap.adapters.hf.masking import baseline, mask_images, mask_tokens, patch_map
from multishap.adapters.server import serve_adapter
from multishap.service.rpc.errors import InvalidArgument
from multishap.service.math.estimators import exact_interactions
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip_backend(tmp_path_factory):
    from hf_models import tiny_clip

    return load_backend("clip", str(tiny_clip(tmp_path_factory.mktemp("clip"))))


@pytest.fixture(scope="module")
def zeroshot_backend():
    return load_backend("imagenet-zeroshot")


def instance(text="a cat on a couch", rows=3, cols=3, **masking):
    return common_pb2.Instance(image=png(48, 40), text=text, grid=common_pb2.Grid(rows=rows, cols=cols),
                               masking=common_pb2.MaskingOptions(**masking))


def prepared(backend, inst):
    return backend.prepare(decode_instance(inst, 10**8))


def test_masked_patches_show_the_baseline_and_the_rest_is_untouched():
    image, base = torch.rand(3, 12, 12), torch.rand(3, 12, 12)
    patches = patch_map(12, 12, 3, 4)
    present = np.random.default_rng(0).random((5, 12)) < 0.5
    out = mask_images(image, base, patches, present)
    for b in range(5):
        for p in range(12):
            where = torch.from_numpy(patches == p)
            expected = image if present[b, p] else base
            assert torch.equal(out[b][:, where], expected[:, where])


def test_baselines():
    pixels = np.random.default_rng(1).integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
    zero = torch.tensor([0.25, 0.5, 0.75])
    z = baseline(pixels, 16, common_pb2.MaskingOptions(image_baseline=common_pb2.IMAGE_BASELINE_ZERO), zero, 0)
    assert torch.equal(z, zero.view(3, 1, 1).expand(3, 16, 16))
    m = baseline(pixels, 16, common_pb2.MaskingOptions(image_baseline=common_pb2.IMAGE_BASELINE_MEAN), zero, 0)
    assert m.std(dim=(1, 2)).max() == 0
    b = baseline(pixels, 16, common_pb2.MaskingOptions(image_baseline=common_pb2.IMAGE_BASELINE_BLUR, blur_radius=3), zero, 0)
    assert b.shape == (3, 16, 16) and b.std() < z.new_tensor(pixels / 255.0).std()


def test_token_masking_keeps_positions_and_length(clip_backend):
    prep = prepared(clip_backend, instance("a cat on a couch"))
    layout = prep.state.inputs.text
    assert prep.tokens == ["a", "cat", "on", "a", "couch"]
    assert layout.prefix == [101] and layout.suffix == [102] and layout.replacement == 103
    present = np.array([[True, False, True, True, False]])
    masked = mask_tokens(layout.ids, present, layout.replacement)
    assert masked.shape == (1, 5) and list(masked[0, [0, 2, 3]]) == list(layout.ids[[0, 2, 3]])
    assert list(masked[0, [1, 4]]) == [103, 103]
    pad = prepared(clip_backend, instance("a cat", text_mask="pad")).state.inputs.text
    assert pad.replacement == 0


def test_factorised_scores_equal_per_coalition_scores(clip_backend):
    prep = prepared(clip_backend, instance())
    masks = np.random.default_rng(2).random((200, prep.num_players)) < 0.5
    masks[:, :9] = masks[:20, :9][np.arange(200) % 20]
    clip_backend.factorised = False
    plain = clip_backend.forward(prep, masks)
    clip_backend.factorised = True
    fact = clip_backend.forward(prep, masks)
    np.testing.assert_allclose(fact, plain, atol=1e-6)


@pytest.mark.parametrize("text, message", [("[CLS] [SEP]", "no tokens once special tokens are removed"),
                                           ("word " * 60, "this model reads at most 40")])
def test_texts_that_cannot_be_players(clip_backend, text, message):
    with pytest.raises(InvalidArgument, match=message):
        prepared(clip_backend, instance(text))


def test_served_over_grpc_with_clear_errors_and_encoder_pass_counts(clip_backend):
    running, _ = serve_adapter(clip_backend)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = scorer_pb2_grpc.ScorerStub(channel)
            players = stub.Describe(scorer_pb2.DescribeRequest(instance=instance()), timeout=30)
            assert list(players.tokens) == ["a", "cat", "on", "a", "couch"] and players.factorised
            assert players.score_semantics.startswith("cosine")
            masks = np.random.default_rng(3).random((64, 14)) < 0.5
            masks[:, 9:] = True
            reply = stub.Score(scorer_pb2.ScoreRequest(instance=instance(), num_players=14, num_coalitions=64,
                                                       coalitions=pack_coalitions(masks)), timeout=30)
            values = unpack_values(reply.values, 64)
            assert np.all(np.abs(values) <= 1.0 + 1e-6)
            images = running.registry.get_sample_value("multishap_adapter_encoder_passes_total", {"encoder": "image"})
            texts = running.registry.get_sample_value("multishap_adapter_encoder_passes_total", {"encoder": "text"})
            assert texts == 1 and images == len(np.unique(masks[:, :9], axis=0))
            tall = instance(rows=30)
            tall.image = png(48, 20)
            for bad, code, message in [
                (tall, grpc.StatusCode.INVALID_ARGUMENT, "larger than the 48x20 image"),
                (instance(text="[SEP]"), grpc.StatusCode.INVALID_ARGUMENT, "no tokens once special tokens are removed"),
                (instance(rows=41), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_grid_side = 32"),
            ]:
                with pytest.raises(grpc.RpcError) as err:
                    stub.Describe(scorer_pb2.DescribeRequest(instance=bad), timeout=30)
                assert err.value.code() == code and message in err.value.details()
    finally:
        running.stop(None)


def test_exact_sii_with_the_real_model_agrees_factorised_and_plain(zeroshot_backend):
    prep = prepared(zeroshot_backend, instance("cat couch", rows=3, cols=3))
    assert prep.tokens == ["cat", "couch"]

    def value_fn(factorised):
        def fn(masks):
            zeroshot_backend.factorised = factorised
            return zeroshot_backend.forward(prep, masks)
        return fn

    fact = exact_interactions(value_fn(True), 9, 2, max_batch=2048)
    plain = exact_interactions(value_fn(False), 9, 2, max_batch=256)
    zeroshot_backend.factorised = True
    np.testing.assert_allclose(fact, plain, atol=1e-6)
    assert np.abs(fact).max() > 1e-4


def test_embeddings_are_cached_across_requests(clip_backend):
    prep = prepared(clip_backend, instance("a cat"))
    masks = np.random.default_rng(4).random((50, prep.num_players)) < 0.5
    from prometheus_client import CollectorRegistry

    running_before, registry = clip_backend.passes, CollectorRegistry()
    clip_backend.register_metrics(registry)
    first = clip_backend.forward(prep, masks)
    second = clip_backend.forward(prep, masks[::-1])
    np.testing.assert_array_equal(first, second[::-1])
    passes = {e: registry.get_sample_value("multishap_adapter_encoder_passes_total", {"encoder": e})
              for e in ("image", "text")}
    assert passes == {"image": len(np.unique(masks[:, :9], axis=0)), "text": len(np.unique(masks[:, 9:], axis=0))}
    clip_backend.passes = running_before


def test_clip_logit_is_the_scaled_cosine(clip_backend, tmp_path_factory):
    from hf_models import tiny_clip

    path = str(tiny_clip(tmp_path_factory.mktemp("clip-logit")))
    logit = load_backend("clip", path, score="logit")
    prep = prepared(clip_backend, instance())
    masks = np.random.default_rng(5).random((10, prep.num_players)) < 0.5
    cosine = clip_backend.forward(prep, masks)
    np.testing.assert_allclose(logit.forward(prepared(logit, instance()), masks), cosine * logit.scale, rtol=1e-6)
    assert logit.score_semantics.startswith("logit")
    with pytest.raises(ValueError, match="no logit scale"):
        load_backend("imagenet-zeroshot", score="logit")
