"""Dual encoders (CLIP-style, and the ImageNet zero-shot model) behind the Scorer contract.

v(S) = cosine(image encoder(masked image), text encoder(masked text)). The image part of
a coalition only affects the image embedding and the text part only the text embedding,
so every distinct masked image and every distinct masked text is encoded once per
instance - embeddings are cached with the prepared instance, across Score requests - and
the scores are combined afterwards (docs/architecture.md, "Dual encoders factorise"): the estimate is unchanged, the
number of encoder passes falls by the number of coalitions sharing them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Counter

from multishap.adapters.backend import DecodedInstance, ModelBackend, PreparedInstance
from multishap.v1 import common_pb2

from .masking import MaskedInputs, masked_inputs


class DualEncoder(Protocol):
    """What the backend needs from a model: two encoders into one space."""

    model_id: str
    image_size: int
    zero_pixel: torch.Tensor  # per-channel pixel value the model normalises to 0
    tokenizer: object
    logit_scale: Optional[float]  # CLIP's learned temperature, or None

    def encode_images(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


class EmbeddingCache:
    """Embeddings of masked inputs keyed by their mask, shared by concurrent requests.

    Holds at most ``capacity`` entries; when full it is cleared (scores stay correct, only
    the saving is lost for entries seen again).
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._items: dict[bytes, torch.Tensor] = {}
        self._lock = threading.Lock()

    def embed(self, present: np.ndarray, encode: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        """Embeddings of every row of ``present``, encoding only the rows not cached yet."""
        keys = [row.tobytes() for row in np.packbits(present, axis=1)]
        with self._lock:
            known = {k: self._items[k] for k in keys if k in self._items}
        first = {k: i for i, k in reversed(list(enumerate(keys))) if k not in known}
        if first:
            fresh = dict(zip(first, encode(present[list(first.values())])))
            known.update(fresh)
            with self._lock:
                if len(self._items) + len(fresh) > self.capacity:
                    self._items.clear()
                self._items.update(fresh)
        return torch.stack([known[k] for k in keys])


@dataclass(frozen=True)
class _State:
    inputs: MaskedInputs
    images: EmbeddingCache = field(default_factory=EmbeddingCache)
    texts: EmbeddingCache = field(default_factory=EmbeddingCache)


class DualEncoderBackend(ModelBackend):
    """Scores coalitions with a dual encoder: cosine similarity, or CLIP's logit (the cosine
    times the model's learned scale)."""

    factorised = True

    def __init__(self, encoder: DualEncoder, micro_batch: int = 32, factorise: bool = True,
                 default_baseline: int = common_pb2.IMAGE_BASELINE_ZERO, max_text_tokens: int = 77,
                 score: str = "cosine") -> None:
        if score not in ("cosine", "logit"):
            raise ValueError(f"a dual encoder's score is cosine or logit; got {score!r}")
        if score == "logit" and encoder.logit_scale is None:
            raise ValueError("this model has no logit scale; use score cosine")
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.scale = encoder.logit_scale if score == "logit" else 1.0
        self.score_semantics = ("cosine similarity" if score == "cosine" else
                                f"logit (cosine similarity x {self.scale:.4g})") + " of the image and text embeddings"
        self.micro_batch = micro_batch
        self.factorised = factorise
        self.default_baseline = default_baseline
        self.max_text_tokens = max_text_tokens
        self.passes = None

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self.passes = Counter("multishap_adapter_encoder_passes", "Inputs encoded, by encoder", ["encoder"],
                              registry=registry)

    def prepare(self, instance: DecodedInstance) -> PreparedInstance[_State]:
        inputs, tokens = masked_inputs(instance, self.encoder.image_size, self.encoder.zero_pixel,
                                       self.encoder.tokenizer, self.default_baseline, self.max_text_tokens)
        return PreparedInstance(instance, tokens, state=_State(inputs))

    def _count(self, encoder: str, k: int) -> None:
        if self.passes is not None:
            self.passes.labels(encoder=encoder).inc(k)

    def encode_images(self, inputs: MaskedInputs, present: np.ndarray) -> torch.Tensor:
        """Embeddings of the image under each row of patch masks (no caching)."""
        out = [self.encoder.encode_images(inputs.images(present[k : k + self.micro_batch]))
               for k in range(0, len(present), self.micro_batch)]
        self._count("image", len(present))
        return torch.cat(out)

    def encode_texts(self, inputs: MaskedInputs, present: np.ndarray) -> torch.Tensor:
        """Embeddings of the text under each row of token masks (no caching)."""
        ids = torch.from_numpy(inputs.token_ids(present))
        out = [self.encoder.encode_texts(chunk, torch.ones_like(chunk)) for chunk in ids.split(self.micro_batch)]
        self._count("text", len(present))
        return torch.cat(out)

    def forward(self, instance: PreparedInstance[_State], masks: np.ndarray) -> np.ndarray:
        state: _State = instance.state
        m = instance.num_patches
        if self.factorised:
            images, image_of = np.unique(masks[:, :m], axis=0, return_inverse=True)
            texts, text_of = np.unique(masks[:, m:], axis=0, return_inverse=True)
            image_emb = state.images.embed(images, lambda rows: self.encode_images(state.inputs, rows))
            text_emb = state.texts.embed(texts, lambda rows: self.encode_texts(state.inputs, rows))
            image_emb = image_emb[torch.from_numpy(image_of.ravel())]
            text_emb = text_emb[torch.from_numpy(text_of.ravel())]
        else:
            image_emb = self.encode_images(state.inputs, masks[:, :m])
            text_emb = self.encode_texts(state.inputs, masks[:, m:])
        return self.scale * (image_emb.double() * text_emb.double()).sum(-1).cpu().numpy()
