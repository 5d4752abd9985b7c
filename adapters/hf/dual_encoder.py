"""Dual encoders (CLIP-style, and the ImageNet zero-shot model) behind the Scorer contract.

v(S) = cosine(image encoder(masked image), text encoder(masked text)). The image part of
a coalition only affects the image embedding and the text part only the text embedding,
so every distinct masked image and every distinct masked text is encoded once per
instance - embeddings are cached with the prepared instance, across Score requests - and
the scores are combined afterwards (docs/architecture.md, "Dual encoders factorise"): the estimate is unchanged, the
number of encoder passes falls by the number of coalitions sharing them.

Concurrent Score calls of one instance share that work while it runs, too: a mask another
call is encoding is waited for, not encoded again (:class:`EmbeddingCache`). Each call
reports the encodes it ran itself in its usage (``image_encodes``, ``text_encodes``), and
Describe's costs count encoder passes, which is what a factorised call spends. A product of
image masks and text masks (ScoreProduct) encodes each side once and scores every pair as
one matrix product.

Answer scores candidate captions against the whole image the way Score scores the full
coalition: the full image's embedding (from the cache), each candidate tokenised like the
instance's text with every token present. Without candidates only an encoder with classes of
its own (``top_class``, the ImageNet zero-shot model) answers.

At start-up the backend times its image and text encoders on dummy inputs and keeps the
fastest threads and micro-batches (:mod:`.tuning`); an explicit micro-batch or thread count
wins.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Counter

from multishap.adapters.backend import (AnswerResult, DecodedInstance, ModelBackend, PreparedInstance, ScoreCall,
                                        ScoreResult, argmax_answer)
from multishap.service.math.costs import product_rows
from multishap.service.rpc.errors import InvalidArgument
from multishap.v1 import common_pb2, scorer_pb2

from . import tuning
from .masking import MaskedInputs, masked_inputs, text_layout

log = logging.getLogger(__name__)
TEXT_CANDIDATES = (8, 16, 32, 64, 128)  # texts are short and cheap: larger batches than images pay off
PROBE_TEXT = "a photo of a cat lying on a couch"


class DualEncoder(Protocol):
    """What the backend needs from a model: two encoders into one space."""

    model_id: str
    device: torch.device
    image_size: int
    zero_pixel: torch.Tensor  # per-channel pixel value the model normalises to 0
    tokenizer: object
    logit_scale: Optional[float]  # CLIP's learned temperature, or None

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1], on any device -> (B, d) float32 unit vectors."""

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids and attention mask, on any device -> (B, d) float32 unit vectors."""


class _InFlight:
    """The masks one caller claimed to encode together: whoever else asks for them waits on ``done``;
    ``values`` (key -> embedding) stays None when that encode failed (they then claim the masks themselves)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.values: Optional[dict[bytes, torch.Tensor]] = None


class EmbeddingCache:
    """Embeddings of masked inputs keyed by their mask, shared by concurrent requests.

    A caller claims the masks that are neither cached nor being encoded, encodes them in one
    go, and waits for the ones another caller claimed before it, so concurrent Score calls of
    one instance never encode a mask twice. Holds at most ``capacity`` entries; when full it
    is cleared (scores stay correct, only the saving is lost for entries seen again).
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._items: dict[bytes, torch.Tensor] = {}
        self._pending: dict[bytes, _InFlight] = {}
        self._lock = threading.Lock()

    def embed(self, present: np.ndarray, encode: Callable[[np.ndarray], torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Embeddings of every row of ``present``, and how many rows this call encoded itself."""
        keys = [row.tobytes() for row in np.packbits(present, axis=1)]
        first: dict[bytes, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        found: dict[bytes, torch.Tensor] = {}
        encoded, wanted = 0, list(first)
        while wanted:
            mine, theirs, flight = [], {}, _InFlight()
            with self._lock:
                for key in wanted:
                    if key in self._items:
                        found[key] = self._items[key]
                    elif key in self._pending:
                        theirs[key] = self._pending[key]
                    else:
                        self._pending[key] = flight
                        mine.append(key)
            if mine:
                self._encode(mine, present[[first[key] for key in mine]], encode, flight)
                found.update(flight.values)
                encoded += len(mine)
            wanted = []
            for key, other in theirs.items():
                other.done.wait()
                if other.values is None:
                    wanted.append(key)
                else:
                    found[key] = other.values[key]
        return torch.stack([found[key] for key in keys]), encoded

    def _encode(self, keys: list[bytes], rows: np.ndarray, encode: Callable[[np.ndarray], torch.Tensor],
                flight: _InFlight) -> None:
        """Encode the claimed ``keys`` (their ``rows``), publish them, and wake whoever waits for them."""
        try:
            values = dict(zip(keys, encode(rows)))
        except BaseException:
            with self._lock:
                for key in keys:
                    del self._pending[key]
            flight.done.set()
            raise
        with self._lock:
            if len(self._items) + len(keys) > self.capacity:
                self._items.clear()
            self._items.update(values)
            for key in keys:
                del self._pending[key]
        flight.values = values
        flight.done.set()


@dataclass(frozen=True)
class _State:
    inputs: MaskedInputs
    images: EmbeddingCache = field(default_factory=EmbeddingCache)
    texts: EmbeddingCache = field(default_factory=EmbeddingCache)


class DualEncoderBackend(ModelBackend):
    """Scores coalitions with a dual encoder: cosine similarity, or CLIP's logit (the cosine
    times the model's learned scale).

    ``micro_batch`` (images and texts per forward pass) and ``threads`` (torch intra-op
    threads, process-wide) are chosen by the start-up probe when not given.
    """

    factorised = True

    def __init__(self, encoder: DualEncoder, micro_batch: Optional[int] = None, factorise: bool = True,
                 default_baseline: int = common_pb2.IMAGE_BASELINE_ZERO, max_text_tokens: int = 77,
                 score: str = "cosine", threads: Optional[int] = None) -> None:
        if score not in ("cosine", "logit"):
            raise ValueError(f"a dual encoder's score is cosine or logit; got {score!r}")
        if score == "logit" and encoder.logit_scale is None:
            raise ValueError("this model has no logit scale; use score cosine")
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.scale = encoder.logit_scale if score == "logit" else 1.0
        self.score_semantics = ("cosine similarity" if score == "cosine" else
                                f"logit (cosine similarity x {self.scale:.4g})") + " of the image and text embeddings"
        self.factorised = factorise
        self.default_baseline = default_baseline
        self.max_text_tokens = max_text_tokens
        self.passes = None
        self.tuning, self.text_tuning = self._tune(micro_batch, threads)
        self.micro_batch, self.text_micro_batch = self.tuning.micro_batch, self.text_tuning.micro_batch
        log.info("%s: images at %s; texts at %s", self.model_id, self.tuning.describe(), self.text_tuning.describe())

    def _tune(self, micro_batch: Optional[int], threads: Optional[int]) -> tuple[tuning.Tuning, tuning.Tuning]:
        """Threads and image micro-batch from timing the image encoder, then the text micro-batch at those threads."""
        device = self.encoder.device
        images = tuning.DummyImages(self.encoder.image_size, device)
        image = tuning.tune(lambda b: self.encoder.encode_images(images(b)), device, micro_batch, threads)
        ids = torch.tensor(self.encoder.tokenizer(PROBE_TEXT)["input_ids"], device=device)[None]
        text = tuning.tune(lambda b: self.encoder.encode_texts(ids.expand(b, -1), torch.ones_like(ids).expand(b, -1)),
                           device, micro_batch, image.threads or None, TEXT_CANDIDATES)
        return image, text

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self.passes = Counter("multishap_adapter_encoder_passes", "Inputs encoded, by encoder", ["encoder"],
                              registry=registry)

    def costs(self) -> scorer_pb2.Costs:
        """Factorised, a call costs the distinct masked images and texts it encodes, not its coalitions."""
        if not self.factorised:
            return super().costs()
        return scorer_pb2.Costs(unit="encoder passes", image_encode=1.0, text_encode=1.0, coalition=0.0)

    def _text_cost(self) -> float:
        """One text encode in image encodes (the probe's rates), for sizing calls in coalitions."""
        return self.tuning.items_per_s / self.text_tuning.items_per_s

    def preferred_batch(self) -> int:
        """Coalitions per call that take a few seconds even if each brings a new image and a new text."""
        return tuning.preferred_batch(self.tuning.items_per_s, self.micro_batch, 1.0 + self._text_cost())

    def preferred_timeout(self) -> float:
        return tuning.preferred_timeout(self.preferred_batch(), self.tuning.items_per_s, 1.0 + self._text_cost())

    def prepare(self, instance: DecodedInstance) -> PreparedInstance[_State]:
        inputs, tokens = masked_inputs(instance, self.encoder.image_size, self.encoder.zero_pixel,
                                       self.encoder.tokenizer, self.default_baseline, self.max_text_tokens,
                                       self.encoder.device)
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
        ids = torch.from_numpy(inputs.token_ids(present)).to(self.encoder.device)
        out = [self.encoder.encode_texts(chunk, torch.ones_like(chunk)) for chunk in ids.split(self.text_micro_batch)]
        self._count("text", len(present))
        return torch.cat(out)

    def _embed(self, cache: EmbeddingCache, present: np.ndarray,
               encode: Callable[[np.ndarray], torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Embeddings of each row through ``cache`` (each distinct row looked up once), and the encodes run."""
        distinct, index = np.unique(present, axis=0, return_inverse=True)
        embeddings, encoded = cache.embed(distinct, encode)
        return embeddings[torch.from_numpy(index.ravel()).to(embeddings.device)], encoded

    def _rows(self, instance: PreparedInstance[_State], masks: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Values of the coalitions, and the image and text encodes this call ran."""
        state: _State = instance.state
        m = instance.num_patches
        if self.factorised:
            image_emb, images = self._embed(state.images, masks[:, :m], lambda r: self.encode_images(state.inputs, r))
            text_emb, texts = self._embed(state.texts, masks[:, m:], lambda r: self.encode_texts(state.inputs, r))
        else:
            image_emb, images = self.encode_images(state.inputs, masks[:, :m]), len(masks)
            text_emb, texts = self.encode_texts(state.inputs, masks[:, m:]), len(masks)
        values = self.scale * (image_emb.double() * text_emb.double()).sum(-1).cpu().numpy()
        return values, images, texts

    def _product(self, instance: PreparedInstance[_State], image_masks: np.ndarray,
                 text_masks: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(A, B) values of every image mask with every text mask, and the encodes this call ran."""
        if not self.factorised:
            values, images, texts = self._rows(instance, product_rows(image_masks, text_masks))
            return values.reshape(len(image_masks), len(text_masks)), images, texts
        state: _State = instance.state
        image_emb, images = self._embed(state.images, image_masks, lambda r: self.encode_images(state.inputs, r))
        text_emb, texts = self._embed(state.texts, text_masks, lambda r: self.encode_texts(state.inputs, r))
        return self.scale * (image_emb.double() @ text_emb.double().T).cpu().numpy(), images, texts

    def tabulate(self, instance: PreparedInstance[_State]) -> tuple[np.ndarray, np.ndarray]:
        """Every masked image's and every masked text's embedding (2^m and 2^n float64 rows, row k the mask
        whose player i is present when bit i of k is set): the whole game as two tables, for benchmarks and
        tests that need exact truth on a real model (``service.math.games.TabulatedGame``)."""
        def every_mask(k: int) -> np.ndarray:
            return ((np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)

        m, n = instance.num_patches, len(instance.tokens)
        with torch.inference_mode():
            images = self.encode_images(instance.state.inputs, every_mask(m)).double().cpu().numpy()
            texts = self.encode_texts(instance.state.inputs, every_mask(n)).double().cpu().numpy()
        return self.scale * images, texts

    def forward(self, instance: PreparedInstance[_State], masks: np.ndarray) -> np.ndarray:
        return self._rows(instance, masks)[0]

    def forward_product(self, instance: PreparedInstance[_State], image_masks: np.ndarray,
                        text_masks: np.ndarray) -> np.ndarray:
        return self._product(instance, image_masks, text_masks)[0]

    def score(self, instance: PreparedInstance[_State], masks: np.ndarray, call: ScoreCall) -> ScoreResult:
        if call.dry_run:
            return ScoreResult(np.zeros(len(masks)))
        values, images, texts = self._rows(instance, masks)
        return ScoreResult(values, usage=common_pb2.Usage(image_encodes=images, text_encodes=texts))

    def score_product(self, instance: PreparedInstance[_State], image_masks: np.ndarray, text_masks: np.ndarray,
                      call: ScoreCall) -> ScoreResult:
        if call.dry_run:
            return ScoreResult(np.zeros(len(image_masks) * len(text_masks)))
        values, images, texts = self._product(instance, image_masks, text_masks)
        return ScoreResult(values.ravel(), usage=common_pb2.Usage(image_encodes=images, text_encodes=texts))

    def answer(self, instance: PreparedInstance[_State], candidates: Sequence[str], call: ScoreCall) -> AnswerResult:
        """With candidates: each caption scored as Score scores the full coalition with it in place of the text
        (the same cosine or logit), the highest wins. Without: the encoder's top class where it has classes
        (``top_class``), else InvalidArgument."""
        state: _State = instance.state
        full = np.ones((1, instance.num_patches), dtype=bool)
        if not candidates:
            classify = getattr(self.encoder, "top_class", None)
            if classify is None:
                raise InvalidArgument(f"{self.model_id} has no classes of its own to answer with: give candidates "
                                      "(captions) to choose among")
            with torch.inference_mode():
                name = classify(state.inputs.images(full))[0]
            self._count("image", 1)
            return AnswerResult(name, how="top class", usage=common_pb2.Usage(image_encodes=1))
        if self.factorised:
            image_emb, images = self._embed(state.images, full, lambda r: self.encode_images(state.inputs, r))
        else:
            image_emb, images = self.encode_images(state.inputs, full), 1
        text_emb = self._encode_captions(instance, candidates)
        values = self.scale * (image_emb.double() * text_emb.double()).sum(-1).cpu().numpy()
        return argmax_answer(candidates, values, common_pb2.Usage(image_encodes=images, text_encodes=len(candidates)))

    def _encode_captions(self, instance: PreparedInstance[_State], captions: Sequence[str]) -> torch.Tensor:
        """(k, d) embeddings of whole captions, tokenised like the instance's text; captions of one token length
        are encoded together (no padding, so each embedding is the one Score computes for that text)."""
        ids = []
        for k, caption in enumerate(captions):
            try:
                layout, _ = text_layout(self.encoder.tokenizer, caption, instance.decoded.masking.text_mask,
                                        self.max_text_tokens)
            except InvalidArgument as err:
                raise InvalidArgument(f"candidate {k}: {err}") from None
            ids.append(np.concatenate([layout.prefix, layout.ids, layout.suffix]).astype(np.int64))
        out: list[Optional[torch.Tensor]] = [None] * len(ids)
        for length in sorted({len(row) for row in ids}):
            group = [k for k, row in enumerate(ids) if len(row) == length]
            batch = torch.from_numpy(np.stack([ids[k] for k in group])).to(self.encoder.device)
            with torch.inference_mode():
                embeddings = torch.cat([self.encoder.encode_texts(chunk, torch.ones_like(chunk))
                                        for chunk in batch.split(self.text_micro_batch)])
            for k, embedding in zip(group, embeddings):
                out[k] = embedding
        self._count("text", len(ids))
        return torch.stack(out)
