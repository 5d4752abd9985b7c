"""Generative vision-language models (LLaVA-style) scored by the target answer's probability.

The prompt is the model's own chat template around the image and the user's text; the
answer is appended and teacher-forced, and v(S) = the joint probability of the answer
tokens (sum of their log-probabilities, then exp; option: the log-probability) given the
masked image and masked text. Text players are the tokens whose characters lie inside the
user's text in the rendered prompt (found through the tokenizer's offsets), so template
and image tokens never become players.

Its own answer (the Answer RPC) is a greedy decode of a few tokens after the whole prompt,
from which the operator's answer pattern extracts the answer (:class:`AnswerPattern`);
candidates are answers, each scored as Score scores the full coalition with it as the target.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from multishap.adapters.backend import (AnswerPattern, AnswerResult, DecodedInstance, PreparedInstance, ScoreCall,
                                        argmax_answer)
from multishap.adapters.pixels import resized
from multishap.service.rpc.errors import Cancelled, InvalidArgument, shown
from multishap.v1 import common_pb2

from .joint import JointModelBackend
from .masking import MaskedInputs, TextLayout, image_inputs

GREEDY_TOKENS = 16  # new tokens of the model's own answer


class VlmBackend(JointModelBackend):
    """A local ``AutoModelForImageTextToText`` checkpoint with an ``AutoProcessor`` and chat template."""

    scores = ("probability", "log-probability")

    def __init__(self, path: str | Path, device: str = "cpu", dtype: Optional[torch.dtype] = None,
                 micro_batch: Optional[int] = None, score: str = "probability", threads: Optional[int] = None,
                 answer_pattern: Optional[str] = None) -> None:
        """``micro_batch`` and ``threads`` (torch intra-op threads) are probed at start-up when None;
        ``answer_pattern`` is the operator's regular expression that extracts the answer from a greedy decode."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        super().__init__(device, dtype, micro_batch, score)
        self.answer_pattern = AnswerPattern(answer_pattern)
        self.processor = AutoProcessor.from_pretrained(str(path))
        self.model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=self.dtype).eval().to(self.device)
        self.tokenizer = self.processor.tokenizer
        images = self.processor.image_processor
        crop = getattr(images, "crop_size", None)
        self.image_size = int(crop["height"] if crop else images.size["shortest_edge"])
        self.set_normalisation(images.image_mean, images.image_std)
        self.model_id = str(path)
        self.score_semantics = ("joint probability" if score == "probability" else "log-probability") + \
            " of the target answer's tokens"
        self.tune("a cat", micro_batch, threads)

    def _layout(self, text: str, answer: str, pixels: np.ndarray) -> tuple[TextLayout, list[str], int]:
        """Token layout of prompt + answer: (players between prefix and suffix, tokens, answer length)."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        ids = self.processor(images=resized(pixels, self.image_size, self.image_size), text=prompt)["input_ids"][0]
        ids = list(ids)
        image_token = self.processor.image_token
        expanded = prompt.replace(image_token, image_token * ids.count(self.model.config.image_token_index))
        encoded = self.tokenizer(expanded, return_offsets_mapping=True, add_special_tokens=False)
        if list(encoded["input_ids"]) != ids:
            raise InvalidArgument("the prompt does not tokenise consistently; cannot locate the text's tokens")
        start = expanded.rindex(text)
        end = start + len(text)
        special = set(self.tokenizer.all_special_ids)
        inside = [k for k, (a, b) in enumerate(encoded["offset_mapping"])
                  if a >= start and b <= end and b > a and ids[k] not in special]
        if not inside:
            raise InvalidArgument(f"the text {shown(text)} has no tokens once template and special tokens are removed")
        first, last = inside[0], inside[-1]
        answer_ids = self.tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
        replacement = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        layout = TextLayout(np.asarray(ids[first : last + 1]), ids[:first], ids[last + 1 :] + answer_ids, int(replacement))
        return layout, self.tokenizer.convert_ids_to_tokens(ids[first : last + 1]), len(answer_ids)

    def prepare(self, instance: DecodedInstance) -> PreparedInstance[tuple[MaskedInputs, int]]:
        if not instance.target.strip():
            raise InvalidArgument("a generative model is scored on the target answer: give one")
        image, base, patches = image_inputs(instance, self.image_size, self.mean.view(3).cpu(),
                                            common_pb2.IMAGE_BASELINE_ZERO, self.device)
        layout, tokens, answer_length = self._layout(instance.text, instance.target, instance.image)
        inputs = MaskedInputs(image, base, patches, layout)
        return PreparedInstance(instance, tokens, state=(inputs, answer_length))

    @torch.inference_mode()
    def forward(self, instance: PreparedInstance[tuple[MaskedInputs, int]], masks: np.ndarray) -> np.ndarray:
        inputs, answer_length = instance.state
        out = []
        for pixels, ids in self.batches(inputs, masks, instance.num_patches):
            logits = self.model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids)).logits
            answer = ids[:, -answer_length:]
            predicted = logits[:, -answer_length - 1 : -1].float().log_softmax(-1)
            log_prob = predicted.gather(-1, answer[..., None])[..., 0].sum(-1)
            out.append(log_prob if self.score_kind == "log-probability" else log_prob.exp())
        return torch.cat(out).double().cpu().numpy()

    @torch.inference_mode()
    def answer(self, instance: PreparedInstance[tuple[MaskedInputs, int]], candidates: Sequence[str],
               call: ScoreCall) -> AnswerResult:
        """With candidates: each one's score as the target of the full coalition, the highest wins. Without: a
        greedy decode of up to GREEDY_TOKENS tokens after the whole prompt, the answer pattern applied to it."""
        full = np.ones((1, instance.num_players), dtype=bool)
        if candidates:
            scores = []
            for candidate in candidates:  # one forward pass each: the answers differ in length
                if call.cancelled.is_set():
                    raise Cancelled("the Answer request was cancelled")
                scores.append(self.forward(self.prepare(replace(instance.decoded, target=candidate)), full)[0])
            return argmax_answer(candidates, scores)
        inputs, answer_length = instance.state
        pixels, ids = next(self.batches(inputs, full, instance.num_patches))
        prompt = ids[:, :-answer_length]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.model.generate(input_ids=prompt, pixel_values=pixels, attention_mask=torch.ones_like(prompt),
                                  max_new_tokens=GREEDY_TOKENS, do_sample=False, num_beams=1, pad_token_id=pad)
        new = out[0, prompt.shape[1]:]
        raw = self.tokenizer.decode(new, skip_special_tokens=True)
        answer, note = self.answer_pattern.extract(raw)
        return AnswerResult(answer, raw=raw, how=f"greedy, {len(new)} new tokens, {note}")
