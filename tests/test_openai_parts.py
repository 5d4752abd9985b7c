"""The OpenAI adapter's parts on their own: rendering, scoring, limits, retries, cache."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from pathlib import Path

import grpc
import httpx2
import numpy as np
import openai
import pytest
from PIL import Image

from multishap.adapters.instances import decode_instance
from multishap.adapters.openai.backend import estimate_prompt_tokens
from multishap.adapters.openai.cache import ScoreCache
from multishap.adapters.openai.limits import Price, RateLimiter, SpendLedger, load_price
from multishap.adapters.openai.render import Renderer, RenderOptions, sent_size, split_words
from multishap.adapters.openai.retry import Redactor, final_error, is_retryable, retry_after
from multishap.adapters.openai.scoring import Answer, ScoringOptions, UnusableAnswer, parse_answer, score
from multishap.service.rpc.errors import InvalidArgument, ResourceExhausted
from multishap.service.rpc.status import status_code
from multishap.v1 import common_pb2
from images import png


def decoded(text: str = "Is  the\ncat   here?", rows: int = 2, cols: int = 3, width: int = 60, height: int = 40,
            baseline: int = 0):
    inst = common_pb2.Instance(image=png(width, height, seed=2), text=text, target="yes",
                               grid=common_pb2.Grid(rows=rows, cols=cols),
                               masking=common_pb2.MaskingOptions(image_baseline=baseline))
    return decode_instance(inst, 10**8)


def test_words_keep_punctuation_and_whitespace():
    text = "Is  the\ncat   here?"
    assert [text[a:b] for a, b in split_words(text)] == ["Is", "the", "cat", "here?"]
    renderer = Renderer(decoded(text), RenderOptions(template="Q: {text} A:", placeholder="<?>"))
    present = np.array([True] * 6 + [True, False, True, False])
    assert renderer.render(present).prompt == "Q: Is  <?>\ncat   <?> A:"


def test_patches_show_the_photo_or_the_baseline():
    for baseline, expect in ((common_pb2.IMAGE_BASELINE_ZERO, "black"), (common_pb2.IMAGE_BASELINE_MEAN, "flat")):
        renderer = Renderer(decoded(baseline=baseline), RenderOptions())
        mask = np.array([True, False, True, False, True, False] + [True] * 4)
        pixels = renderer.render(mask).pixels
        photo = renderer.image
        assert pixels.shape == (40, 60, 3)
        # Patch (0, 1) covers rows 0..19 and columns 20..39 of the 60x40 image.
        np.testing.assert_array_equal(pixels[:20, :20], photo[:20, :20])
        hidden = pixels[:20, 20:40]
        assert (hidden == 0).all() if expect == "black" else len(np.unique(hidden.reshape(-1, 3), axis=0)) == 1
        decoded_png = np.asarray(Image.open(io.BytesIO(renderer.render(mask).png())))
        np.testing.assert_array_equal(decoded_png, pixels)


def test_images_are_shrunk_to_the_size_limit_but_never_enlarged():
    assert sent_size(1000, 500, 512) == (512, 256)
    assert sent_size(30, 40, 512) == (30, 40)
    renderer = Renderer(decoded(width=300, height=200), RenderOptions(image_size=150))
    assert renderer.image.shape == (100, 150, 3)
    with pytest.raises(InvalidArgument, match="finer than"):
        Renderer(decoded(rows=20, cols=20, width=300, height=200), RenderOptions(image_size=10))


def test_render_options_are_checked():
    with pytest.raises(ValueError, match="exactly once"):
        RenderOptions(template="no slot")
    with pytest.raises(ValueError, match="detail"):
        RenderOptions(detail="ultra")


def test_token_estimate_follows_the_tile_rule():
    prompt = "x" * 40
    assert estimate_prompt_tokens(prompt, 40, 60, "low") == 10 + 8 + 85
    assert estimate_prompt_tokens(prompt, 384, 512, "auto") == 18 + 85 + 170
    # 2048x4096 -> 1024x2048 -> 768x1536: 2 x 3 tiles.
    assert estimate_prompt_tokens(prompt, 2048, 4096, "high") == 18 + 85 + 170 * 6


def answer(*pairs, **kwargs) -> Answer:
    return Answer(top=tuple((t, math.log(p)) for t, p in pairs), **kwargs)


def test_target_probability_adds_every_spelling():
    got, bounded = score(answer((" Yes", 0.5), ("yes", 0.2), ("No", 0.3)), "yes", ScoringOptions())
    assert got == pytest.approx(0.7) and not bounded
    got, _ = score(answer((" Yes", 0.5), ("yes", 0.2)), "yes", ScoringOptions(match="exact"))
    assert got == pytest.approx(0.2)
    got, _ = score(answer(("yes", 0.25)), "yes", ScoringOptions(score="logprob"))
    assert got == pytest.approx(math.log(0.25))


def test_missing_target_is_bounded_by_the_last_listed_and_the_rest():
    listed = [(f"t{i}", 0.01) for i in range(20)]  # 0.2 listed, 0.8 left
    got, bounded = score(answer(*listed), "yes", ScoringOptions(match="exact"))
    assert bounded and got == pytest.approx(0.01)
    # Normalized matching admits 6 unlisted spellings (yes, Yes, YES, each with a leading space or not).
    assert score(answer(*listed), "yes", ScoringOptions())[0] == pytest.approx(0.06)
    crowded = [(f"t{i}", 0.0495) for i in range(20)]  # 0.99 listed: the rest, 0.01, is the tighter bound
    assert score(answer(*crowded), "yes", ScoringOptions(match="exact"))[0] == pytest.approx(0.01)
    short = [("a", 0.6), ("b", 0.3)]  # fewer than asked for: only the rest bounds it
    assert score(answer(*short), "yes", ScoringOptions())[0] == pytest.approx(0.1)


def test_token_ids_match_only_the_given_ids():
    options = ScoringOptions(target_token_ids=frozenset({42}))
    got, bounded = score(answer(("token_id:42", 0.3), ("token_id:7", 0.5), ("42", 0.1)), "", options)
    assert got == pytest.approx(0.3) and not bounded


def test_answers_without_log_probabilities_are_malformed():
    with pytest.raises(UnusableAnswer, match="logprobs=true") as info:
        parse_answer({"choices": [{"message": {"content": "yes"}}], "usage": {"prompt_tokens": 7}}, ScoringOptions(),
                     "yes")
    assert info.value.prompt_tokens == 7  # billed all the same
    with pytest.raises(UnusableAnswer, match="not an object"):
        parse_answer([1, 2], ScoringOptions(), "yes")
    with pytest.raises(UnusableAnswer, match="prompt_logprobs"):
        parse_answer({"choices": []}, ScoringOptions(prompt_logprobs=True), "yes")
    closed = {"prompt_logprobs": [None, {"1": {"logprob": -1.0, "decoded_token": "yes"}},
                                  {"2": {"logprob": -0.1, "decoded_token": "<|end|>"}}]}
    with pytest.raises(UnusableAnswer, match="continue_final_message"):
        parse_answer(closed, ScoringOptions(prompt_logprobs=True), "yes")


def test_scoring_options_are_checked():
    with pytest.raises(ValueError, match="between 1 and 20"):
        ScoringOptions(top_logprobs=25)
    with pytest.raises(ValueError, match="score"):
        ScoringOptions(score="odds")


def test_rate_limiter_spaces_starts_evenly():
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def run() -> list[float]:
        limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)  # one start every 0.5 s
        waits = [await limiter.acquire() for _ in range(4)]
        limiter.pause(10.0)
        waits.append(await limiter.acquire())
        waits.append(await limiter.acquire(amount=3))
        waits.append(await limiter.acquire())
        return waits

    assert asyncio.run(run()) == [0.0, 0.5, 0.5, 0.5, 10.0, 0.5, 1.5]


def test_a_late_wake_up_delays_the_next_start_instead_of_bunching():
    async def run() -> list[float]:
        sleeps = [0]

        async def sleep(seconds: float) -> None:
            sleeps[0] += 1
            await asyncio.sleep(seconds + (0.15 if sleeps[0] == 1 else 0.0))  # the first wake-up is late

        limiter = RateLimiter(1200, sleep=sleep)  # one start every 50 ms
        starts = []

        async def one() -> None:
            await limiter.acquire()
            starts.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(6)))
        return sorted(starts)

    assert np.diff(asyncio.run(run())).min() >= 0.045


def test_spend_ledger_caps_each_job_separately_and_is_shared_through_the_store(tmp_path):
    ledger = SpendLedger(ScoreCache(tmp_path / "c.sqlite"), max_requests=2, max_cost=None)
    ledger.reserve("a")
    replica = SpendLedger(ScoreCache(tmp_path / "c.sqlite"), max_requests=2, max_cost=None)
    replica.reserve("a")
    with pytest.raises(ResourceExhausted, match="--max-requests"):
        ledger.reserve("a")
    ledger.reserve("b")
    costly = SpendLedger(ScoreCache(tmp_path / "d.sqlite"), max_requests=None, max_cost=1.0)
    costly.reserve("a")
    costly.charge("a", 1.5)
    with pytest.raises(ResourceExhausted, match="1.5000 of its 1"):
        costly.reserve("a")


def test_price_table(tmp_path):
    table = tmp_path / "prices.toml"
    table.write_text('[models."gpt-x"]\ninput = 2.5\noutput = 10.0\n')
    price = load_price(table, "gpt-x")
    assert price == Price(2.5, 10.0) and price.cost(1_000_000, 100_000) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="no entry for model 'other'.*gpt-x"):
        load_price(table, "other")


def status_error(status: int, headers: dict[str, str], body: dict) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://x/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, json=body, request=request)
    return openai.AsyncOpenAI(api_key="k", base_url="http://x/v1")._make_status_error_from_response(response)


def test_retry_decisions_and_waits():
    assert is_retryable(status_error(429, {}, {})) and is_retryable(status_error(503, {}, {}))
    assert not is_retryable(status_error(401, {}, {})) and not is_retryable(status_error(400, {}, {}))
    assert retry_after(status_error(429, {"retry-after-ms": "250", "retry-after": "9"}, {})) == 0.25
    assert retry_after(status_error(429, {"retry-after": "3"}, {})) == 3.0
    assert retry_after(status_error(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, {})) == 0.0
    assert retry_after(status_error(500, {}, {})) is None


def test_errors_name_the_cause_and_never_the_key():
    key = "sk-secret-123456"
    redact = Redactor(key)
    err = final_error(status_error(401, {}, {"error": {"message": f"Incorrect API key provided: {key}"}}),
                      "the endpoint", 1, 0.1, redact)
    assert status_code(err) == grpc.StatusCode.UNAUTHENTICATED and key not in str(err) and "[redacted]" in str(err)
    err = final_error(status_error(404, {}, {"error": {"message": "model nope does not exist"}}), "the endpoint",
                      1, 0.1, redact)
    assert status_code(err) == grpc.StatusCode.FAILED_PRECONDITION and "model nope does not exist" in str(err)
    err = final_error(status_error(503, {}, {}), "the endpoint", 8, 12.0, redact)
    assert status_code(err) == grpc.StatusCode.UNAVAILABLE and "failed 8 times" in str(err)


def test_cache_keeps_answers_across_connections(tmp_path):
    path = tmp_path / "c.sqlite"
    first = ScoreCache(path)
    stored = Answer(top=(("yes", -0.5),), prompt_tokens=100, completion_tokens=1)
    first.put("k1", stored)
    second = ScoreCache(path)
    assert second.get_many(["k1", "k2"]) == {"k1": stored} and len(second) == 1


def test_the_example_price_table_loads():
    table = Path(__file__).resolve().parents[1] / "deploy" / "prices.toml"
    assert load_price(table, "gpt-4o-mini").input > 0


def test_log_redaction_is_one_factory_for_every_key(caplog):
    caplog.set_level(logging.INFO)
    Redactor("sk-first-key-0001").protect_logs()
    factory = logging.getLogRecordFactory()
    Redactor("sk-second-key-0002").protect_logs()
    assert logging.getLogRecordFactory() is factory  # adapters created later add no layer
    logging.getLogger("multishap.test").info("keys %s and %s", "sk-first-key-0001", "sk-second-key-0002")
    assert "keys [redacted] and [redacted]" in caplog.text
