"""The Scorer's Answer RPC in every adapter, through real gRPC servers on loopback.

With candidates, each candidate's score must be the value Score gives the full coalition when
the candidate stands in for the caption (dual encoders) or the answer (VLM, VQA, endpoint), and
the answer their argmax; without, the model's own answer: the top class, a greedy decode checked
against an independent ``generate``, or one cached greedy completion at the simulated endpoint.
"""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from images import png
from multishap.adapters.hf import load_backend
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import common_pb2, scorer_pb2
from servers import RecordingBackend, adapter
from servers import instance as synthetic_instance

pytestmark = pytest.mark.slow
CAT_BREEDS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def answer(stub, inst: common_pb2.Instance, candidates=(), job: str = "") -> scorer_pb2.AnswerResponse:
    return stub.Answer(scorer_pb2.AnswerRequest(instance=inst, candidates=list(candidates), job=job), timeout=120)


def full_score(stub, inst: common_pb2.Instance) -> float:
    """Score's value of the full coalition (every player present) of ``inst``."""
    players = stub.Describe(scorer_pb2.DescribeRequest(instance=inst), timeout=60)
    n = players.grid.rows * players.grid.cols + len(players.tokens)
    reply = stub.Score(scorer_pb2.ScoreRequest(instance=inst, num_players=n, num_coalitions=1,
                                               coalitions=pack_coalitions(np.ones((1, n), dtype=bool))), timeout=60)
    return float(unpack_values(reply.values, 1)[0])


def replaced(inst: common_pb2.Instance, **fields) -> common_pb2.Instance:
    out = common_pb2.Instance()
    out.CopyFrom(inst)
    for name, value in fields.items():
        setattr(out, name, value)
    return out


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


# -- dual encoders -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zeroshot():
    with adapter(load_backend("imagenet-zeroshot", micro_batch=8, threads=1)) as (_, _, stub):
        yield stub


def chelsea(text: str) -> common_pb2.Instance:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    return common_pb2.Instance(image=buf.getvalue(), text=text, target=text, grid=common_pb2.Grid(rows=2, cols=2))


def test_zeroshot_chooses_the_cat_caption_with_score_values(zeroshot):
    captions = ["a photo of a rocket", "a photo of a cat", "a cup of coffee"]
    reply = answer(zeroshot, chelsea("a photo of a dog"), captions)
    assert reply.answer == "a photo of a cat" and reply.how == "argmax over 3 candidates"
    want = [full_score(zeroshot, chelsea(c)) for c in captions]
    np.testing.assert_allclose(reply.scores, want, atol=1e-6)
    assert reply.usage.text_encodes == 3 and reply.usage.image_encodes <= 1 and not reply.raw


def test_zeroshot_answers_its_top_class(zeroshot):
    reply = answer(zeroshot, chelsea("a photo of a cat"))
    assert reply.answer in CAT_BREEDS and reply.how == "top class"
    assert list(reply.scores) == [] and reply.usage.image_encodes == 1


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from hf_models import tiny_clip

    path = str(tiny_clip(tmp_path_factory.mktemp("clip")))
    with adapter(load_backend("clip", path, micro_batch=4, score="logit", threads=1)) as (_, _, stub):
        yield stub


def test_clip_argmax_is_that_of_full_coalition_scores(clip):
    inst = common_pb2.Instance(image=png(48, 40, seed=2), text="a cat on a couch", target="x",
                               grid=common_pb2.Grid(rows=2, cols=2))
    captions = ["a dog in the snow", "a cat on a couch", "two red rockets at night", "coffee"]
    reply = answer(clip, inst, captions)
    want = [full_score(clip, replaced(inst, text=c)) for c in captions]
    np.testing.assert_allclose(reply.scores, want, atol=1e-6)
    assert reply.answer == captions[int(np.argmax(want))] and len(set(np.round(want, 6))) == len(want)


def test_clip_cannot_answer_without_candidates(clip):
    inst = common_pb2.Instance(image=png(48, 40), text="a cat", grid=common_pb2.Grid(rows=2, cols=2))
    err = refused(lambda: answer(clip, inst))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "give candidates" in err.details()


# -- joint models ------------------------------------------------------------------------------------------

QUESTION = "what animal is on the couch?"


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    from hf_models import tiny_llava

    path = str(tiny_llava(tmp_path_factory.mktemp("llava")))
    with adapter(load_backend("vlm", path, micro_batch=2, threads=1)) as (_, _, stub):
        yield path, stub


def test_vlm_greedy_answer_is_an_independent_greedy_decode(llava):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path, stub = llava
    image = png(32, 32, seed=5)  # the model's input size: no resizing on either side
    reply = answer(stub, common_pb2.Instance(image=image, text=QUESTION, target="a cat",
                                             grid=common_pb2.Grid(rows=2, cols=2)))
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=Image.open(io.BytesIO(image)).convert("RGB"), text=prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
    new = out[0, inputs["input_ids"].shape[1]:]
    text = processor.tokenizer.decode(new, skip_special_tokens=True)
    assert reply.raw == text and text.strip()
    assert reply.answer == text.strip().splitlines()[0].strip()
    assert reply.how == f"greedy, {len(new)} new tokens, first line" and list(reply.scores) == []


def test_vlm_candidates_are_scored_as_the_full_coalition_target(llava):
    _, stub = llava
    inst = common_pb2.Instance(image=png(48, 40), text=QUESTION, target="a cat", grid=common_pb2.Grid(rows=2, cols=2))
    candidates = ["a dog", "a cat", "yes", "the couch"]
    reply = answer(stub, inst, candidates)
    want = [full_score(stub, replaced(inst, target=c)) for c in candidates]
    np.testing.assert_allclose(reply.scores, want, rtol=1e-5)
    assert reply.answer == candidates[int(np.argmax(want))]


@pytest.fixture(scope="module")
def vilt(tmp_path_factory):
    from hf_models import tiny_vilt

    path = str(tiny_vilt(tmp_path_factory.mktemp("vilt")))
    with adapter(load_backend("vilt", path, micro_batch=2, threads=1)) as (_, _, stub):
        yield path, stub


def test_vilt_top_label_is_the_independent_models_argmax(vilt):
    import torch
    from transformers import ViltForQuestionAnswering, ViltProcessor

    path, stub = vilt
    question, image = "what animal is on the couch", png(64, 64, seed=3)
    inst = common_pb2.Instance(image=image, text=question, target="dog", grid=common_pb2.Grid(rows=2, cols=2))
    reply = answer(stub, inst)
    processor = ViltProcessor.from_pretrained(path)
    model = ViltForQuestionAnswering.from_pretrained(path).eval()
    inputs = processor(images=Image.open(io.BytesIO(image)).convert("RGB"), text=question, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits[0]
    assert reply.answer == model.config.id2label[int(logits.argmax())] and reply.how == "top class"

    labels = ["no", "cat", "dog"]
    chosen = answer(stub, inst, labels)
    want = [full_score(stub, replaced(inst, target=label)) for label in labels]
    np.testing.assert_allclose(chosen.scores, want, atol=1e-5)
    np.testing.assert_allclose(chosen.scores, [float(logits[model.config.label2id[a]]) for a in labels], atol=1e-3)
    assert chosen.answer == labels[int(np.argmax(want))]
    err = refused(lambda: answer(stub, inst, ["cat", "giraffe"]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "candidate 1 ('giraffe')" in err.details()


# -- the OpenAI-compatible adapter -------------------------------------------------------------------------

def test_openai_greedy_answer_is_paid_once_and_cached(tmp_path):
    from dataclasses import replace

    from openai_env import instance, openai_adapter, options, simulator

    inst = instance()
    with simulator(inst) as sim:
        opts = options(sim, tmp_path / "c.sqlite")
        with openai_adapter(opts) as (_, _, stub):
            first = answer(stub, inst, job="j1")
            assert first.raw.startswith("Answer: Yes\n") and first.answer == "Answer: Yes"
            assert first.how == "greedy at temperature 0, first line"
            assert first.usage.requests == 1 and first.usage.cache_hits == 0 and first.usage.prompt_tokens > 0
            sent = len(sim.traffic.arrivals)
            again = answer(stub, inst, job="j1")
            assert (again.answer, again.raw) == (first.answer, first.raw)
            assert again.usage.requests == 0 and again.usage.cache_hits == 1 and len(sim.traffic.arrivals) == sent

            value = full_score(stub, inst)
            chosen = answer(stub, inst, ["no", "yes", "maybe"])
            assert chosen.scores[1] == pytest.approx(value, abs=1e-12)
            assert chosen.answer == ["no", "yes", "maybe"][int(np.argmax(chosen.scores))]
            assert chosen.usage.requests == 0 and chosen.usage.cache_hits == 3 and chosen.usage.bounded == 2
            err = refused(lambda: answer(stub, inst, ["yes", "a cat"]))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "candidate 1 'a cat'" in err.details()
        assert len(sim.traffic.arrivals) == sent + 1  # the full coalition's Score request, nothing else

        # The operator's pattern, applied to the cached text: group 1 is the answer; no match, no answer.
        with openai_adapter(replace(opts, answer_pattern=r"Answer:\s*(\w+)")) as (_, _, stub):
            reply = answer(stub, inst)
            assert reply.answer == "Yes" and reply.how == "greedy at temperature 0, answer pattern"
            assert reply.usage.requests == 0
        with openai_adapter(replace(opts, answer_pattern=r"Verdict: (\w+)")) as (_, _, stub):
            reply = answer(stub, inst)
            assert reply.answer == "" and "did not match" in reply.how and reply.raw == first.raw
        assert len(sim.traffic.arrivals) == sent + 1


# -- the synthetic adapter and hostile requests ------------------------------------------------------------

def test_synthetic_answers_its_answer_parameter_or_says_it_cannot():
    with adapter(SyntheticBackend()) as (running, _, stub):
        known = synthetic_instance(parameters={"family": "mlp", "seed": "3", "answer": "cat"})
        reply = answer(stub, known)
        assert reply.answer == "cat" and list(reply.scores) == []
        chosen = answer(stub, known, ["dog", "cat", "a bird"])
        assert chosen.answer == "cat" and list(chosen.scores) == [0.0, 1.0, 0.0]
        assert chosen.how == "argmax over 3 candidates"
        tied = answer(stub, known, ["dog", "bird"])
        assert tied.answer == "" and tied.how == "no answer: 2 of 2 candidates tie at the top score"
        err = refused(lambda: answer(stub, synthetic_instance()))
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED
        assert err.details().startswith("this target cannot answer")
        assert running.registry.get_sample_value("multishap_adapter_answers_total", {"mode": "own"}) == 1
        assert running.registry.get_sample_value("multishap_adapter_answers_total", {"mode": "candidates"}) == 2


def test_hostile_candidates_are_refused_before_any_model_work():
    backend = RecordingBackend()
    with adapter(backend) as (_, _, stub):
        inst = synthetic_instance(parameters={"family": "mlp", "seed": "3", "answer": "cat"})
        err = refused(lambda: answer(stub, inst, [f"answer {k}" for k in range(65)]))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_candidates" in err.details()
        err = refused(lambda: answer(stub, inst, ["cat", "x" * 5000]))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_text_chars" in err.details()
        for bad, words in ((["cat", "  "], "candidate 1 is blank"), (["cat", "dog", "cat"], "candidates 0 and 2"),
                           (["Cat", "the cat."], "same answer once normalised"), (["\u200b", "dog"], "control or formatting"),
                           (["c\x00at", "dog"], "control or formatting"), (["\u202eevil"], "control or formatting")):
            err = refused(lambda: answer(stub, inst, bad))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.details(), bad
        for job in ("j" * 129, "job\x1b[2J"):
            err = refused(lambda: answer(stub, inst, ["cat"], job=job))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "job" in err.details()
        assert backend.seen == []
        assert answer(stub, inst, [f"answer {k}" for k in range(63)] + ["cat"], job="j" * 128).answer == "cat"
        assert len(backend.seen) == 1
