"""A CLIP-style checkpoint (``CLIPModel`` + tokenizer + image processor) as a DualEncoder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.nn import functional as F


def _pooled(output) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipEncoder:
    """Loads a CLIP checkpoint from a local path (offline mode respected) and encodes."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: Optional[torch.dtype] = None) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.model = CLIPModel.from_pretrained(str(path), dtype=self.dtype).eval().to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        processor = AutoImageProcessor.from_pretrained(str(path))
        self.image_size = int(self.model.config.vision_config.image_size)
        self.mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.zero_pixel = self.mean.view(3)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)  # images are masked on the device
        self.max_text_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.model_id = str(path)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.to(self.device) - self.mean) / self.std).to(self.dtype)
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)

    @torch.inference_mode()
    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model.get_text_features(input_ids=input_ids.to(self.device),
                                           attention_mask=attention_mask.to(self.device))
        return F.normalize(_pooled(out).float(), dim=-1)
