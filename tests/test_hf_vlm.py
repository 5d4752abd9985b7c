"""The generative VLM kind: teacher-forced answer probability, players from the user's text only."""

import numpy as np
import pytest
import torch

from images import png
from multishap.adapters.instances import decode_instance
from multishap.adapters.hf import load_backend
from multishap.service.rpc.errors import InvalidArgument
from multishap.v1 import common_pb2

pytestmark = pytest.mark.slow
QUESTION = "what animal is on the couch?"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from hf_models import tiny_llava

    return str(tiny_llava(tmp_path_factory.mktemp("llava")))


def instance(text=QUESTION, target="a cat"):
    return common_pb2.Instance(image=png(48, 40), text=text, target=target, grid=common_pb2.Grid(rows=2, cols=2))


def test_players_are_the_user_text_tokens_only(checkpoint):
    backend = load_backend("vlm", checkpoint)
    prep = backend.prepare(decode_instance(instance(), 10**8))
    assert "".join(prep.tokens).replace("Ġ", " ") == QUESTION
    assert all("<image>" not in t and "ASSISTANT" not in t for t in prep.tokens)


def test_score_is_the_teacher_forced_answer_probability(checkpoint):
    backend = load_backend("vlm", checkpoint)
    prep = backend.prepare(decode_instance(instance(), 10**8))
    full = np.ones((1, prep.num_players), dtype=bool)
    # Independent computation: the processor's own inputs, the answer appended, summed log-softmax.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], add_generation_prompt=True)
    inputs, _ = prep.state
    pixels = ((inputs.image[None] - backend.mean) / backend.std)
    ids = processor(images=np.zeros((32, 32, 3), np.uint8), text=prompt, return_tensors="pt")["input_ids"]
    answer = processor.tokenizer(" a cat", add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, answer], dim=1)
    with torch.inference_mode():
        logits = model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids)).logits
    log_prob = logits[0, -answer.shape[1] - 1 : -1].log_softmax(-1).gather(-1, answer[0, :, None]).sum()
    np.testing.assert_allclose(backend.forward(prep, full), [float(log_prob.exp())], rtol=1e-5)

    masks = np.random.default_rng(0).random((20, prep.num_players)) < 0.5
    probabilities = backend.forward(prep, masks)
    assert ((0 < probabilities) & (probabilities < 1)).all() and probabilities.std() > 0
    backend.micro_batch = 3
    np.testing.assert_allclose(backend.forward(prep, masks), probabilities, rtol=1e-5)
    log_backend = load_backend("vlm", checkpoint, score="log-probability")
    np.testing.assert_allclose(np.exp(log_backend.forward(prep, masks)), probabilities, rtol=1e-5)


def test_bad_instances(checkpoint):
    backend = load_backend("vlm", checkpoint)
    with pytest.raises(InvalidArgument, match="scored on the target answer"):
        backend.prepare(decode_instance(instance(target=" "), 10**8))
