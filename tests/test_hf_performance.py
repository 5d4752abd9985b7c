"""The hf adapter's performance machinery, checked for correctness (speed itself is bench/hf.py's):
the frozen image network scores like the eager one, the start-up probe's choices, --dtype,
in-flight sharing of encodes between concurrent calls, ScoreProduct, costs and usage."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from images import png
from multishap.adapters.backend import ScoreCall
from multishap.adapters.hf import load_backend, tuning
from multishap.adapters.hf.dual_encoder import EmbeddingCache
from multishap.adapters.instances import decode_instance
from multishap.service.math.costs import product_rows
from multishap.v1 import common_pb2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    from hf_models import tiny_clip

    return str(tiny_clip(tmp_path_factory.mktemp("clip")))


@pytest.fixture(scope="module")
def clip(clip_path):
    return load_backend("clip", clip_path, micro_batch=4, threads=1)


@pytest.fixture(scope="module")
def zeroshot():
    return load_backend("imagenet-zeroshot", micro_batch=4, threads=1)


def instance(text="a cat on a couch", rows=3, cols=3):
    return common_pb2.Instance(image=png(48, 40), text=text, grid=common_pb2.Grid(rows=rows, cols=cols))


def prepared(backend, inst=None):
    return backend.prepare(decode_instance(inst or instance(), 10**8))


def random_masks(rows, players, seed):
    return np.random.default_rng(seed).random((rows, players)) < 0.5


# Frozen inference


def test_the_frozen_image_network_scores_like_the_eager_one(zeroshot):
    eager = load_backend("imagenet-zeroshot", micro_batch=4, threads=1, fused=False)
    graph = str(zeroshot.encoder.image_model.graph)
    assert isinstance(zeroshot.encoder.image_model, torch.jit.ScriptModule) and "batch_norm" not in graph
    assert isinstance(eager.encoder.image_model, torch.nn.Module) and not isinstance(eager.encoder.image_model,
                                                                                      torch.jit.ScriptModule)
    prep_fused, prep_eager = prepared(zeroshot), prepared(eager)
    masks = random_masks(24, prep_fused.num_players, 0)
    masks[0] = True
    fused, plain = zeroshot.forward(prep_fused, masks), eager.forward(prep_eager, masks)
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-5)
    assert np.ptp(plain) > 1e-3  # the masks change the scores, so agreement means something


# The start-up probe


def test_the_probe_keeps_the_fastest_size_per_input_and_stops_once_sizes_get_slower():
    calls = []

    def step(batch):  # 4 inputs take as long as 1: 4x the rate per input of any other size
        calls.append(batch)
        time.sleep(0.02 if batch == 4 else 0.02 * batch)

    chosen = tuning.tune(step, torch.device("cpu"), threads=1)
    assert (chosen.micro_batch, chosen.threads, chosen.source) == (4, 1, "probe")
    assert sorted(chosen.rates) == [1, 2, 4, 8] and 16 not in calls  # 8 was slower by far: the sweep stopped
    assert "micro-batch 4" in chosen.describe()
    explicit = tuning.tune(step, torch.device("cpu"), micro_batch=3, threads=1)
    assert (explicit.micro_batch, explicit.source, explicit.rates, explicit.thread_rates) == (3, "explicit", {}, {})


def test_a_backend_probes_threads_and_micro_batch_and_an_explicit_choice_wins(clip_path):
    probed = load_backend("clip", clip_path)
    assert probed.tuning.source == "probe" and probed.micro_batch in tuning.CPU_CANDIDATES
    assert probed.micro_batch == max(probed.tuning.rates, key=probed.tuning.rates.get)
    assert probed.tuning.threads in {1, tuning.available_cpus()} and torch.get_num_threads() == probed.tuning.threads
    assert set(probed.tuning.thread_rates) == {1, tuning.available_cpus()}
    assert probed.text_micro_batch in (8, 16, 32, 64, 128)
    explicit = load_backend("clip", clip_path, micro_batch=5, threads=1)
    assert (explicit.micro_batch, explicit.text_micro_batch, explicit.tuning.source) == (5, 5, "explicit")
    assert torch.get_num_threads() == 1


def test_preferred_batch_and_timeout_follow_the_probed_rate(clip):
    batch, timeout = clip.preferred_batch(), clip.preferred_timeout()
    assert batch >= clip.micro_batch and batch % clip.micro_batch == 0
    per_coalition = 1 / clip.tuning.items_per_s + 1 / clip.text_tuning.items_per_s
    assert batch * per_coalition <= tuning.CALL_SECONDS + clip.micro_batch * per_coalition
    assert timeout >= max(tuning.TIMEOUT_FLOOR, batch * per_coalition)
    assert tuning.preferred_batch(100.0, 8) == 200 and tuning.preferred_batch(1.0, 8) == 8
    assert tuning.preferred_timeout(200, 100.0) == tuning.TIMEOUT_FLOOR and tuning.preferred_timeout(800, 10.0) == 400


@pytest.mark.parametrize("kind, model", [("vilt", "tiny_vilt"), ("vlm", "tiny_llava")])
def test_joint_models_probe_too(kind, model, tmp_path):
    import hf_models

    backend = load_backend(kind, str(getattr(hf_models, model)(tmp_path / kind)))
    assert backend.tuning.source == "probe" and backend.micro_batch == backend.tuning.micro_batch
    assert backend.preferred_batch() % backend.micro_batch == 0 and backend.preferred_timeout() >= 10


def test_openmp_threads_sleep_when_idle_unless_told_otherwise():
    script = ("import os, sys\nfrom multishap.adapters.hf import load_backend\n"
              "try:\n    load_backend('no-such-kind')\nexcept ValueError:\n    pass\n"
              "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda environ: subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True,
                                         timeout=120, check=True).stdout.split()
    assert run(env) == ["True", "PASSIVE"]
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == ["True", "ACTIVE"]


# --dtype


def test_half_precision_is_refused_on_the_cpu_with_a_reason():
    for dtype in ("float16", "bfloat16"):
        with pytest.raises(ValueError, match=f"{dtype} is for CUDA; on the CPU use float32"):
            load_backend("imagenet-zeroshot", dtype=dtype)


def test_dtype_reaches_both_zero_shot_networks(monkeypatch, zeroshot):
    from multishap.adapters.hf import zeroshot as module

    assert next(zeroshot.encoder.text_model.parameters()).dtype == torch.float32
    names = module.imagenet_class_names()
    monkeypatch.setattr(module, "imagenet_class_names", lambda: names[:3])  # 3 prompts to embed, not 1000
    model = module.ImageNetZeroShot("cpu", torch.bfloat16, fused=False)
    assert next(model.image_model.parameters()).dtype == torch.bfloat16
    assert next(model.text_model.parameters()).dtype == torch.bfloat16
    assert model.class_embeddings.dtype == torch.float32 and model.class_embeddings.shape == (3, 384)
    ids = torch.tensor([[101, 2000, 102]])
    out = model.encode_texts(ids, torch.ones_like(ids))
    assert out.dtype == torch.float32 and torch.allclose(out.norm(dim=-1), torch.ones(1), atol=1e-3)


def test_the_cli_passes_the_tuning_options_on(monkeypatch):
    import multishap.adapters.hf as hf
    from multishap.client.cli import build_parser
    from multishap.client.cli.adapter import _backend

    seen = {}
    monkeypatch.setattr(hf, "load_backend", lambda *args: seen.setdefault("args", args))
    args = build_parser().parse_args(["adapter", "hf", "--dtype", "float16", "--device", "cuda", "--threads", "3",
                                      "--no-fuse"])
    _backend(args)
    assert seen["args"] == ("imagenet-zeroshot", None, "cuda", "float16", 0, None, 3, False, None)
    seen.clear()
    _backend(build_parser().parse_args(["adapter", "hf", "--answer-pattern", r"Answer: (\w+)"]))
    assert seen["args"][-1] == r"Answer: (\w+)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_float16_on_cuda_scores_close_to_float32():
    half = load_backend("imagenet-zeroshot", device="cuda", dtype="float16")
    full = load_backend("imagenet-zeroshot", device="cuda")
    assert half.tuning.source == "memory"
    masks = random_masks(16, prepared(full).num_players, 1)
    np.testing.assert_allclose(half.forward(prepared(half), masks), full.forward(prepared(full), masks), atol=2e-2)


# Sharing encodes in flight


def test_concurrent_calls_share_the_encodes_in_flight(clip):
    """Call A's image encode is held until call B has claimed its own images; B needs A's images
    too and must wait for them rather than encode them again."""
    prep = prepared(clip)
    m = prep.num_patches
    masks_a = random_masks(12, prep.num_players, 2)
    masks_b = np.concatenate([masks_a[:8], random_masks(6, prep.num_players, 3)])
    b_encoding, first = threading.Event(), threading.Lock()
    encoded, held = [], []
    original = clip.encode_images

    def encode_images(inputs, present):
        encoded.append(len(present))
        if first.acquire(blocking=False):
            held.append(b_encoding.wait(30))
        else:
            b_encoding.set()
        return original(inputs, present)

    clip.encode_images = encode_images
    results = {}
    try:
        a = threading.Thread(target=lambda: results.setdefault("a", clip.score(prep, masks_a, ScoreCall())))
        b = threading.Thread(target=lambda: results.setdefault("b", clip.score(prep, masks_b, ScoreCall())))
        a.start()
        while not encoded:
            time.sleep(0.001)  # B starts once A holds its claim (no timing is measured)
        b.start()
        a.join(60)
        b.join(60)
    finally:
        del clip.encode_images
    images = lambda masks: {row.tobytes() for row in masks[:, :m]}
    texts = lambda masks: {row.tobytes() for row in masks[:, m:]}
    assert held == [True]
    assert sum(encoded) == len(images(masks_a) | images(masks_b))
    usage_a, usage_b = results["a"].usage, results["b"].usage
    assert usage_a.image_encodes == len(images(masks_a))
    assert usage_b.image_encodes == len(images(masks_b) - images(masks_a))
    assert usage_a.text_encodes + usage_b.text_encodes == len(texts(masks_a) | texts(masks_b))
    np.testing.assert_allclose(results["b"].values, clip.forward(prepared(clip), masks_b), rtol=0, atol=1e-6)


def test_a_waiter_encodes_what_a_failed_caller_claimed():
    cache, started, encoded = EmbeddingCache(), threading.Event(), []
    rows = np.eye(4, dtype=bool)

    def failing(present):
        started.wait(30)
        raise RuntimeError("cancelled")

    def working(present):
        encoded.append(present.copy())
        started.set()
        return torch.from_numpy(present.astype(np.float32))

    errors = []

    def first():
        try:
            cache.embed(rows[:2], failing)
        except RuntimeError as err:
            errors.append(str(err))

    a = threading.Thread(target=first)
    a.start()
    while not cache._pending:
        time.sleep(0.001)
    out, count = cache.embed(rows, working)
    a.join(30)
    assert errors == ["cancelled"] and count == 4
    assert [len(e) for e in encoded] == [2, 2]  # its own two first, then the two the failed call had claimed
    np.testing.assert_array_equal(out.numpy(), rows.astype(np.float32))


# ScoreProduct, costs and usage


@pytest.mark.parametrize("name", ["clip", "zeroshot"])
def test_the_product_equals_the_expanded_coalitions_and_counts_each_side_once(name, request):
    backend = request.getfixturevalue(name)
    prep = prepared(backend)
    m, n = prep.num_patches, len(prep.tokens)
    image_masks, text_masks = random_masks(7, m, 4), random_masks(5, n, 5)
    image_masks[6] = image_masks[0]  # a repeated mask is encoded once
    distinct_images, distinct_texts = ({row.tobytes() for row in masks} for masks in (image_masks, text_masks))
    expected = backend.forward(prepared(backend), product_rows(image_masks, text_masks)).reshape(7, 5)
    product = backend.forward_product(prep, image_masks, text_masks)
    assert product.shape == (7, 5) and product.dtype == np.float64
    np.testing.assert_allclose(product, expected, rtol=0, atol=1e-12)

    fresh = prepared(backend)
    result = backend.score_product(fresh, image_masks, text_masks, ScoreCall())
    np.testing.assert_array_equal(result.values, product.ravel())
    assert (result.usage.image_encodes, result.usage.text_encodes) == (len(distinct_images), len(distinct_texts))
    assert len(distinct_images) < len(image_masks)
    again = backend.score_product(fresh, image_masks, text_masks, ScoreCall())
    assert (again.usage.image_encodes, again.usage.text_encodes) == (0, 0)
    coalitions = product_rows(image_masks[:3], text_masks[:2])
    scored = backend.score(fresh, coalitions, ScoreCall())
    assert (scored.usage.image_encodes, scored.usage.text_encodes) == (0, 0)
    np.testing.assert_allclose(scored.values, product[:3, :2].ravel(), rtol=0, atol=1e-12)


def test_costs_usage_and_free_dry_runs(clip):
    costs = clip.costs()
    assert (costs.unit, costs.image_encode, costs.text_encode, costs.coalition) == ("encoder passes", 1, 1, 0)
    prep = prepared(clip)
    masks = random_masks(20, prep.num_players, 6)
    dry = clip.score(prep, masks, ScoreCall(dry_run=True))
    dry_product = clip.score_product(prep, masks[:4, :9], masks[:3, 9:], ScoreCall(dry_run=True))
    assert not dry.values.any() and dry.usage is None and dry_product.values.shape == (12,) and dry_product.usage is None
    result = clip.score(prep, masks, ScoreCall())
    assert result.usage.image_encodes == len(np.unique(masks[:, :9], axis=0))
    assert result.usage.text_encodes == len(np.unique(masks[:, 9:], axis=0))
    clip.factorised = False
    try:
        plain = clip.score(prep, masks, ScoreCall())
        assert (clip.costs().unit, clip.costs().coalition) == ("coalitions", 1)
    finally:
        clip.factorised = True
    assert (plain.usage.image_encodes, plain.usage.text_encodes) == (20, 20)
    np.testing.assert_allclose(plain.values, result.values, atol=1e-6)
