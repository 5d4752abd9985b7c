"""Base for models that read image and text together (VQA, generative VLMs).

Nothing factorises for such models: every coalition is one forward pass. The base checks
the score option and the device, and renders coalitions in micro-batches as model inputs.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from multishap.adapters.backend import ModelBackend

from .masking import MaskedInputs


class JointModelBackend(ModelBackend):
    """Holds device, dtype, micro-batch, score kind and the image normalisation."""

    factorised = False
    scores: tuple[str, ...] = ()

    def __init__(self, device: str, dtype: Optional[torch.dtype], micro_batch: int, score: str) -> None:
        if score not in self.scores:
            raise ValueError(f"score must be one of {self.scores}; got {score!r}")
        self.device, self.dtype = torch.device(device), dtype or torch.float32
        self.micro_batch, self.score_kind = micro_batch, score

    def set_normalisation(self, mean, std) -> None:
        """The image processor's per-channel mean and std (pixels in [0, 1])."""
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def batches(self, inputs: MaskedInputs, masks: np.ndarray, m: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised pixel values, token ids) for each micro-batch of coalitions."""
        for k in range(0, len(masks), self.micro_batch):
            rows = masks[k : k + self.micro_batch]
            pixels = ((inputs.images(rows[:, :m]) - self.mean) / self.std).to(self.device, self.dtype)
            yield pixels, torch.from_numpy(inputs.token_ids(rows[:, m:])).to(self.device)
