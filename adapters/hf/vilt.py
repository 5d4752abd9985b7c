"""ViLT-style visual question answering behind the Scorer contract.

v(S) = the model's logit (or sigmoid probability) of the target answer for the masked
image and masked question. Image and text meet inside the model, so nothing factorises:
every coalition is one forward pass, in micro-batches. Its own answer (the Answer RPC) is
its top answer label for the whole image and question; candidates are answer labels, each
scored from that same forward pass as Score scores the full coalition with it as the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from multishap.adapters.backend import AnswerResult, DecodedInstance, PreparedInstance, ScoreCall, argmax_answer
from multishap.service.rpc.errors import InvalidArgument, shown
from multishap.v1 import common_pb2

from .joint import JointModelBackend
from .masking import MaskedInputs, masked_inputs


class ViltBackend(JointModelBackend):
    """A local ``ViltForQuestionAnswering`` checkpoint (or any AutoModelForVisualQuestionAnswering)."""

    scores = ("logit", "probability")

    def __init__(self, path: str | Path, device: str = "cpu", dtype: Optional[torch.dtype] = None,
                 micro_batch: Optional[int] = None, score: str = "logit", threads: Optional[int] = None) -> None:
        """``micro_batch`` and ``threads`` (torch intra-op threads) are probed at start-up when None."""
        from transformers import AutoImageProcessor, AutoModelForVisualQuestionAnswering, AutoTokenizer

        super().__init__(device, dtype, micro_batch, score)
        self.model = AutoModelForVisualQuestionAnswering.from_pretrained(str(path), dtype=self.dtype)
        self.model = self.model.eval().to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        processor = AutoImageProcessor.from_pretrained(str(path))
        divisor = int(getattr(processor, "size_divisor", 32) or 32)
        edge = int(processor.size["shortest_edge"])
        self.image_size = max(divisor, edge // divisor * divisor)
        self.set_normalisation(processor.image_mean, processor.image_std)
        self.max_text_tokens = int(self.model.config.max_position_embeddings)
        self.answers = {str(k): int(v) for k, v in self.model.config.label2id.items()}
        self.model_id = str(path)
        self.score_semantics = ("logit" if score == "logit" else "probability (sigmoid)") + " of the target answer"
        self.tune(next(iter(self.answers)), micro_batch, threads)

    def prepare(self, instance: DecodedInstance) -> PreparedInstance[tuple[MaskedInputs, int]]:
        if instance.target not in self.answers:
            examples = ", ".join(repr(a) for a in list(self.answers)[:5])
            raise InvalidArgument(f"the target answer {shown(instance.target)} is not one of the model's "
                                  f"{len(self.answers)} answers (for example {examples})")
        inputs, tokens = masked_inputs(instance, self.image_size, self.mean.view(3).cpu(), self.tokenizer,
                                       common_pb2.IMAGE_BASELINE_ZERO, self.max_text_tokens, self.device)
        return PreparedInstance(instance, tokens, state=(inputs, self.answers[instance.target]))

    def _logits(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(B, answers) logits of one micro-batch of rendered coalitions."""
        size = pixels.shape[-1]
        return self.model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                          pixel_values=pixels,
                          pixel_mask=torch.ones(len(ids), size, size, dtype=torch.long, device=self.device)).logits

    def _in_unit(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float() if self.score_kind == "logit" else logits.float().sigmoid()

    @torch.inference_mode()
    def forward(self, instance: PreparedInstance[tuple[MaskedInputs, int]], masks: np.ndarray) -> np.ndarray:
        inputs, answer = instance.state
        out = [self._in_unit(self._logits(pixels, ids)[:, answer])
               for pixels, ids in self.batches(inputs, masks, instance.num_patches)]
        return torch.cat(out).double().cpu().numpy()

    @torch.inference_mode()
    def answer(self, instance: PreparedInstance[tuple[MaskedInputs, int]], candidates: Sequence[str],
               call: ScoreCall) -> AnswerResult:
        """The top answer label for the whole instance; with candidates (answer labels), each one's score of the
        full coalition as its target (one forward pass for all), the highest wins."""
        for k, candidate in enumerate(candidates):
            if candidate not in self.answers:
                raise InvalidArgument(f"candidate {k} ({shown(candidate)}) is not one of the model's "
                                      f"{len(self.answers)} answers")
        inputs, _ = instance.state
        full = np.ones((1, instance.num_players), dtype=bool)
        pixels, ids = next(self.batches(inputs, full, instance.num_patches))
        values = self._in_unit(self._logits(pixels, ids)[0]).double().cpu().numpy()
        if candidates:
            return argmax_answer(candidates, [values[self.answers[c]] for c in candidates])
        top = int(np.argmax(values))
        return AnswerResult(next(label for label, k in self.answers.items() if k == top), how="top class")
