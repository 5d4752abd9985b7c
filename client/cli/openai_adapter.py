"""The options of ``multishap adapter openai`` and the backend they configure (needs the openai extra).

The choices and defaults below are the adapter's own (tests/test_cli_options.py holds them to it): they are
spelled here because the adapter's modules import the openai package, which the parser must not need.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

from multishap.service.rpc.convert import IMAGE_BASELINES

from . import types
from .env import Parser

DESCRIPTION = ("Score masked inputs with a chat endpoint's log-probabilities (OpenAI, vLLM, ...). The API key "
               "comes from OPENAI_API_KEY or --api-key-file and is never logged. Paid answers are kept in a "
               "persistent cache.")
DETAILS = ("auto", "low", "high")
SCORES = ("prob", "logprob")
MATCHES = ("normalized", "exact")
BASELINES = tuple(IMAGE_BASELINES)
CACHE = Path.home() / ".cache" / "multishap" / "openai.sqlite"


def add_options(p: Parser) -> None:
    """The endpoint, rendering, scoring, rate-limit and spending options."""
    p.option("base-url", "endpoint base URL, e.g. https://api.openai.com/v1", required=True)
    p.option("model", "model name", required=True)
    p.option("api-key-file", "file holding the API key (else OPENAI_API_KEY)", type=types.path)
    p.option("cache", "SQLite file of paid answers", CACHE, type=types.path)
    p.option("template", "prompt template; {text} becomes the (masked) text, \\n a new line",
             "{text}\\nAnswer with one word.")
    p.option("placeholder", "what a masked word becomes", "___")
    p.option("image-size", "longer side of the image sent, in pixels (never enlarged)", 512, type=types.POSITIVE)
    p.option("detail", "image detail", DETAILS[0], type=types.one_of(DETAILS), choices=DETAILS)
    p.option("baseline", "default image baseline: zero (black), mean or blur", BASELINES[0],
             type=types.one_of(BASELINES), choices=BASELINES)
    p.option("score", "probability or log-probability of the target answer", SCORES[0], type=types.one_of(SCORES),
             choices=SCORES)
    p.option("match", "how a listed token matches the target: normalized (trimmed, any case) or exact",
             MATCHES[0], type=types.one_of(MATCHES), choices=MATCHES)
    p.option("top-logprobs", "alternatives asked for", 20, type=types.integer(0, 20))
    p.option("max-tokens", "completion tokens per request", 1, type=types.POSITIVE)
    p.option("temperature", "sampling temperature", 0.0, type=types.number(0.0))
    p.flag("prompt-logprobs", "score the whole answer from vLLM's prompt log-probabilities")
    p.option("target-token-ids", "comma-separated token ids of the answer, matched with vLLM's "
                                 "return_tokens_as_token_ids", type=types.token_ids)
    p.option("concurrency", "requests in flight", 8, type=types.POSITIVE)
    p.option("rpm", "requests per minute", type=types.number(0.0, inclusive=False))
    p.option("tpm", "tokens per minute", type=types.number(0.0, inclusive=False))
    p.option("timeout", "seconds per request attempt", 60.0, type=types.number(0.0, inclusive=False))
    p.option("deadline", "seconds for one masked input, retries included", 600.0,
             type=types.number(0.0, inclusive=False))
    p.option("max-attempts", "attempts per masked input", 8, type=types.POSITIVE)
    p.option("max-requests", "paid requests per explanation", type=types.POSITIVE)
    p.option("max-cost", "spending per explanation, in the price table's currency (needs --prices)",
             type=types.number(0.0, inclusive=False))
    p.option("prices", "TOML price table: [models.\"NAME\"] input = ..., output = ... per million tokens",
             type=types.path)
    p.option("answer-pattern", ANSWER_PATTERN_HELP, type=answer_pattern)


ANSWER_PATTERN_HELP = ("regular expression that extracts the model's own answer (Answer RPC) from its greedy text: "
                       "group 1 if it has groups, else the match; default: the first line")


def answer_pattern(text: str) -> str:
    """A Python regular expression that compiles, for --answer-pattern."""
    try:
        re.compile(text)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"the answer pattern {text!r} is not a regular expression ({err})") from None
    return text


def api_key(args: argparse.Namespace) -> tuple[str, str]:
    """The API key and where it came from (--api-key-file, else OPENAI_API_KEY; empty when neither has one)."""
    if args.api_key_file:
        try:
            return args.api_key_file.read_text(errors="replace"), f"--api-key-file {args.api_key_file}"
        except OSError as err:
            raise ValueError(f"could not read the API key file: {err.strerror}") from None
    return os.environ.get("OPENAI_API_KEY", ""), "OPENAI_API_KEY"


def backend(args: argparse.Namespace):
    """The OpenAI backend the options describe; ValueError says which option is wrong."""
    from multishap.adapters.openai import (EndpointConfig, OpenAIBackend, OpenAIOptions, RenderOptions,
                                           RetryPolicy, ScoringOptions, load_price)
    from multishap.adapters.openai.credentials import clean_key

    key, source = api_key(args)
    options = OpenAIOptions(
        endpoint=EndpointConfig(args.base_url, args.model, clean_key(key, source), timeout=args.timeout,
                                concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm,
                                max_tokens=args.max_tokens, temperature=args.temperature,
                                retry=RetryPolicy(max_attempts=args.max_attempts, deadline=args.deadline)),
        render=RenderOptions(template=args.template.replace("\\n", "\n"), placeholder=args.placeholder,
                             image_size=args.image_size, detail=args.detail, baseline=IMAGE_BASELINES[args.baseline]),
        scoring=ScoringOptions(score=args.score, match=args.match, top_logprobs=args.top_logprobs,
                               prompt_logprobs=args.prompt_logprobs,
                               target_token_ids=args.target_token_ids or frozenset()),
        cache_path=args.cache, max_requests=args.max_requests, max_cost=args.max_cost,
        price=load_price(args.prices, args.model) if args.prices else None, answer_pattern=args.answer_pattern,
    )
    if not options.endpoint.api_key and not options.endpoint.url.auth:
        logging.warning("no API key (OPENAI_API_KEY or --api-key-file): requests go out without one")
    return OpenAIBackend(options)
