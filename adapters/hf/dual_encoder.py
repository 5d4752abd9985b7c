"""Dual encoders (CLIP-style, and the ImageNet zero-shot model) behind the Scorer contract.

v(S) = cosine(image encoder(masked image), text encoder(masked text)). The image part of
a coalition only affects the image embedding and the text part only the text embedding,
so every distinct masked image and every distinct masked text is encoded once per
instance - embeddings are cached with the prepared instance, across Score requests - and
the scores are combined afterwards (DESIGN.md section 3): the estimate is unchanged, the
number of encoder passes falls by the number of coalitions sharing them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Counter

from multishap.adapters.base import DecodedInstance, PreparedInstance, ScoringBackend
from multishap.service.errors import InvalidArgument
from multishap.v1 import common_pb2

from .masking import baseline, mask_images, mask_tokens, model_input, patch_map, to_tensor


class DualEncoder(Protocol):
    """What the backend needs from a model: two encoders into one space."""

    model_id: str
    image_size: int
    zero_pixel: torch.Tensor  # per-channel pixel value the model normalises to 0
    tokenizer: object

    def encode_images(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class TextLayout:
    """A text as players: the user's tokens between the fixed special tokens."""

    ids: np.ndarray
    prefix: list[int]
    suffix: list[int]
    replacement: int


def text_layout(tokenizer, text: str, text_mask: str, max_length: int) -> tuple[TextLayout, list[str]]:
    """Split the tokenised text into players (no special or template tokens) and the rest."""
    special = set(tokenizer.all_special_ids)
    full = tokenizer(text)["input_ids"]
    players = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]
    if not players:
        raise InvalidArgument(f"the text {text!r} has no tokens once special tokens are removed")
    if len(full) > max_length:
        raise InvalidArgument(f"the text has {len(full)} tokens; this model reads at most {max_length}")
    first = next(k for k, i in enumerate(full) if i not in special)
    last = max(k for k, i in enumerate(full) if i not in special)
    mask_id, pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id
    wanted = text_mask or ("mask" if mask_id is not None else "pad")
    if wanted not in ("mask", "pad"):
        raise InvalidArgument(f"text_mask must be 'mask' or 'pad' for this model; got {text_mask!r}")
    replacement = mask_id if wanted == "mask" and mask_id is not None else pad_id
    if replacement is None:
        raise InvalidArgument("this tokenizer has neither a mask nor a pad token to mask words with")
    layout = TextLayout(np.asarray(players), full[:first], full[last + 1 :], int(replacement))
    return layout, tokenizer.convert_ids_to_tokens(players)


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
    image: torch.Tensor
    base: torch.Tensor
    patches: np.ndarray
    text: TextLayout
    images: EmbeddingCache = field(default_factory=EmbeddingCache)
    texts: EmbeddingCache = field(default_factory=EmbeddingCache)


class DualEncoderBackend(ScoringBackend):
    """Scores coalitions with a dual encoder; cosine similarity (or a scaled logit)."""

    factorised = True

    def __init__(self, encoder: DualEncoder, micro_batch: int = 32, factorise: bool = True,
                 default_baseline: int = common_pb2.IMAGE_BASELINE_ZERO, max_text_tokens: int = 77) -> None:
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.score_semantics = "cosine similarity of the image and text embeddings"
        self.micro_batch = micro_batch
        self.factorised = factorise
        self.default_baseline = default_baseline
        self.max_text_tokens = max_text_tokens
        self.passes = None

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self.passes = Counter("multishap_adapter_encoder_passes", "Inputs encoded, by encoder", ["encoder"],
                              registry=registry)

    def prepare(self, instance: DecodedInstance) -> PreparedInstance:
        size = self.encoder.image_size
        if instance.rows > size or instance.cols > size:
            raise InvalidArgument(f"the grid {instance.rows}x{instance.cols} is finer than the model's "
                                  f"{size}x{size} input: every patch needs at least one pixel")
        layout, tokens = text_layout(self.encoder.tokenizer, instance.text, instance.masking.text_mask,
                                     self.max_text_tokens)
        image = to_tensor(model_input(instance.image, size))
        base = baseline(instance.image, size, instance.masking, self.encoder.zero_pixel, self.default_baseline)
        state = _State(image, base, patch_map(size, size, instance.rows, instance.cols), layout)
        return PreparedInstance(instance, tokens, state=state)

    def _count(self, encoder: str, k: int) -> None:
        if self.passes is not None:
            self.passes.labels(encoder=encoder).inc(k)

    def encode_images(self, state: _State, present: np.ndarray) -> torch.Tensor:
        """Embeddings of the image under each row of patch masks (no caching)."""
        out = []
        for k in range(0, len(present), self.micro_batch):
            out.append(self.encoder.encode_images(mask_images(state.image, state.base, state.patches,
                                                              present[k : k + self.micro_batch])))
        self._count("image", len(present))
        return torch.cat(out)

    def encode_texts(self, layout: TextLayout, present: np.ndarray) -> torch.Tensor:
        """Embeddings of the text under each row of token masks (no caching)."""
        ids = mask_tokens(layout.ids, present, layout.replacement)
        full = np.concatenate([np.tile(layout.prefix, (len(ids), 1)), ids, np.tile(layout.suffix, (len(ids), 1))],
                              axis=1).astype(np.int64)
        out = []
        for k in range(0, len(full), self.micro_batch):
            chunk = torch.from_numpy(full[k : k + self.micro_batch])
            out.append(self.encoder.encode_texts(chunk, torch.ones_like(chunk)))
        self._count("text", len(present))
        return torch.cat(out)

    def score(self, instance: PreparedInstance, masks: np.ndarray) -> np.ndarray:
        state: _State = instance.state
        m = instance.num_patches
        if self.factorised:
            images, image_of = np.unique(masks[:, :m], axis=0, return_inverse=True)
            texts, text_of = np.unique(masks[:, m:], axis=0, return_inverse=True)
            image_emb = state.images.embed(images, lambda rows: self.encode_images(state, rows))
            text_emb = state.texts.embed(texts, lambda rows: self.encode_texts(state.text, rows))
            image_emb = image_emb[torch.from_numpy(image_of.ravel())]
            text_emb = text_emb[torch.from_numpy(text_of.ravel())]
        else:
            image_emb = self.encode_images(state, masks[:, :m])
            text_emb = self.encode_texts(state.text, masks[:, m:])
        return (image_emb.double() * text_emb.double()).sum(-1).cpu().numpy()
