"""Base for models that read image and text together (VQA, generative VLMs).

Nothing factorises for such models: every coalition is one forward pass. The base checks
the score option and the device, renders coalitions in micro-batches as model inputs (on
the model's device), and, once a subclass has loaded its model, times it on a dummy
instance to choose threads and micro-batch (:mod:`.tuning`) and to size a Score call.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional

import numpy as np
import torch

from multishap.adapters.backend import DecodedInstance, ModelBackend
from multishap.v1 import common_pb2

from . import tuning
from .masking import MaskedInputs

log = logging.getLogger(__name__)


class JointModelBackend(ModelBackend):
    """Holds device, dtype, micro-batch, score kind and the image normalisation."""

    factorised = False
    scores: tuple[str, ...] = ()
    probe_text = "what animal is lying on the couch"

    def __init__(self, device: str, dtype: Optional[torch.dtype], micro_batch: Optional[int], score: str) -> None:
        if score not in self.scores:
            raise ValueError(f"score must be one of {self.scores}; got {score!r}")
        self.device, self.dtype = torch.device(device), dtype or torch.float32
        self.micro_batch, self.score_kind = micro_batch, score

    def set_normalisation(self, mean, std) -> None:
        """The image processor's per-channel mean and std (pixels in [0, 1]), kept on the model's device."""
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)

    def tune(self, target: str, micro_batch: Optional[int], threads: Optional[int]) -> None:
        """Choose threads and micro-batch by timing ``forward`` on a dummy 2x2-patch instance whose answer is
        ``target`` (explicit values win), and keep the throughput for sizing Score calls."""
        pixels = np.random.default_rng(0).integers(0, 256, (self.image_size, self.image_size, 3), dtype=np.uint8)
        dummy = self.prepare(DecodedInstance(pixels, self.probe_text, target, 2, 2, common_pb2.MaskingOptions(), {},
                                             "start-up probe"))
        masks = np.random.default_rng(1).random((max(tuning.CPU_CANDIDATES), dummy.num_players)) < 0.5

        def step(batch: int) -> None:
            self.micro_batch = batch
            self.forward(dummy, masks[np.arange(batch) % len(masks)])

        self.tuning = tuning.tune(step, self.device, micro_batch, threads)
        self.micro_batch = self.tuning.micro_batch
        log.info("%s: %s", self.model_id, self.tuning.describe())

    def preferred_batch(self) -> int:
        """Coalitions per call that take a few seconds at the probe's rate (one forward input each)."""
        return tuning.preferred_batch(self.tuning.items_per_s, self.micro_batch)

    def preferred_timeout(self) -> float:
        return tuning.preferred_timeout(self.preferred_batch(), self.tuning.items_per_s)

    def batches(self, inputs: MaskedInputs, masks: np.ndarray, m: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised pixel values, token ids) for each micro-batch of coalitions."""
        for k in range(0, len(masks), self.micro_batch):
            rows = masks[k : k + self.micro_batch]
            pixels = ((inputs.images(rows[:, :m]) - self.mean) / self.std).to(self.dtype)
            yield pixels, torch.from_numpy(inputs.token_ids(rows[:, m:])).to(self.device)
