"""The OpenAI-compatible adapter's backend: render, look up the cache, pay for the rest, score.

Each coalition becomes one chat-completion request (:mod:`.render`), keyed by a hash of
the request it would send. Keys already in the persistent cache cost nothing; the rest
go to the endpoint (:mod:`.endpoint`). A dry run stops before paying and says what the
misses would cost. Scores come from the answers' log-probabilities (:mod:`.scoring`).

Answer (the model's own answer to the unmasked instance) takes the same path: candidates are
scored as the full coalition's target, and without candidates one greedy completion (temperature
0, a few tokens) is paid for once and cached, its text cut by the operator's answer pattern.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from multishap.adapters.backend import (AnswerPattern, AnswerResult, DecodedInstance, PreparedInstance, ScoreCall,
                                        ScoreResult, ScoringBackend, argmax_answer)
from multishap.service.rpc.errors import InvalidArgument, shown
from multishap.v1 import common_pb2, scorer_pb2

from .cache import ScoreCache
from .endpoint import Endpoint, EndpointConfig, EndpointMetrics, Pending
from .limits import Price, SpendLedger
from .render import RenderedInput, Renderer, RenderOptions
from .scoring import Answer, ScoringOptions, bounded_note, score

_TILE, _TILE_TOKENS, _BASE_IMAGE_TOKENS = 512, 170, 85
GREEDY_MAX_TOKENS = 16  # completion tokens of the model's own answer


@dataclass(frozen=True)
class OpenAIOptions:
    """Everything the adapter is configured with."""

    endpoint: EndpointConfig
    render: RenderOptions = RenderOptions()
    scoring: ScoringOptions = ScoringOptions()
    cache_path: Path | str = field(default_factory=lambda: Path.home() / ".cache" / "multishap" / "openai.sqlite")
    max_requests: Optional[int] = None
    max_cost: Optional[float] = None
    price: Optional[Price] = None
    answer_pattern: Optional[str] = None  # the operator's regex for the model's own answer (default: first line)

    def __post_init__(self) -> None:
        if self.max_cost is not None and self.price is None:
            raise ValueError("max_cost needs a price table entry for the model (--prices)")


def estimate_prompt_tokens(prompt: str, height: int, width: int, detail: str) -> int:
    """Rough prompt tokens of one request: ~4 characters a token, images by OpenAI's tile rule.

    A detail="low" image is 85 tokens; otherwise the image is fitted into 2048x2048, its
    short side brought down to 768, and each 512-pixel tile costs 170 tokens plus 85.
    Used for dry runs and the tokens-per-minute limiter until the endpoint reports usage.
    """
    text = math.ceil(len(prompt.encode()) / 4) + 8
    if detail == "low":
        return text + _BASE_IMAGE_TOKENS
    scale = min(1.0, 2048 / max(height, width))
    h, w = height * scale, width * scale
    scale = min(1.0, 768 / min(h, w))
    tiles = math.ceil(h * scale / _TILE) * math.ceil(w * scale / _TILE)
    return text + _BASE_IMAGE_TOKENS + _TILE_TOKENS * tiles


@dataclass
class _InstanceState:
    """A prepared instance's renderer, and the prompt tokens the endpoint last billed for it."""

    renderer: Renderer
    observed_tokens: Optional[int] = None


class OpenAIBackend(ScoringBackend):
    """Scores coalitions with an OpenAI-compatible chat endpoint's log-probabilities."""

    factorised = False

    def __init__(self, options: OpenAIOptions) -> None:
        self.options = options
        config = options.endpoint
        self.model_id = f"{config.model} at {config.url.display}"
        unit = "log-probability" if options.scoring.score == "logprob" else "probability"
        how = "prompt log-probabilities" if options.scoring.prompt_logprobs else \
            f"the first token's top-{options.scoring.top_logprobs} log-probabilities"
        note = bounded_note(options.scoring)
        self.score_semantics = f"{unit} of the target answer from {how}" + (f"; bounded rows: {note}" if note else "")
        self.answer_pattern = AnswerPattern(options.answer_pattern)
        self.cache = ScoreCache(options.cache_path)
        self.metrics = EndpointMetrics(CollectorRegistry())
        self.endpoint = Endpoint(config, options.scoring, self.cache,
                                 SpendLedger(self.cache, options.max_requests, options.max_cost), options.price,
                                 self.metrics)
        self.endpoint.redact.protect_logs()

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self.metrics = self.endpoint.metrics = EndpointMetrics(registry)

    def spending_caps(self) -> common_pb2.SpendingCaps:
        """--max-requests and --max-cost, so that a dry run can warn when its estimate passes them."""
        return common_pb2.SpendingCaps(max_requests=self.options.max_requests, max_cost=self.options.max_cost)

    def costs(self) -> scorer_pb2.Costs:
        """One paid chat-completion request per coalition (cache hits are free, but not known in advance)."""
        return scorer_pb2.Costs(unit="requests", coalition=1.0)

    def close(self) -> None:
        self.endpoint.close()

    # -- players ---------------------------------------------------------------------------

    def prepare(self, instance: DecodedInstance) -> PreparedInstance[_InstanceState]:
        target = instance.target.strip()
        scoring = self.options.scoring
        if not target and not scoring.target_token_ids:
            raise InvalidArgument("the instance has no target answer: give the answer whose probability is explained")
        self._check_scorable(target, "target")
        renderer = Renderer(instance, self.options.render)
        return PreparedInstance(instance, renderer.words, state=_InstanceState(renderer))

    def _check_scorable(self, answer: str, what: str) -> None:
        """Refuse an answer that top log-probabilities cannot score: more than one word."""
        scoring = self.options.scoring
        if not scoring.prompt_logprobs and not scoring.target_token_ids and len(answer.split()) > 1:
            raise InvalidArgument(
                f"the {what} {shown(answer)} has more than one word, but top log-probabilities score only the first "
                "answer token: give a one-word answer, or run the adapter with --prompt-logprobs (vLLM)"
            )

    # -- requests --------------------------------------------------------------------------

    def _body(self, rendered: RenderedInput, image_url: str, target: str) -> dict[str, Any]:
        """The chat-completion arguments for one masked input."""
        config, scoring = self.options.endpoint, self.options.scoring
        content = [{"type": "image_url", "image_url": {"url": image_url, "detail": self.options.render.detail}},
                   {"type": "text", "text": rendered.prompt}]
        body: dict[str, Any] = {"model": config.model, "messages": [{"role": "user", "content": content}],
                                "max_tokens": config.max_tokens, "temperature": config.temperature}
        if scoring.prompt_logprobs:
            body["messages"].append({"role": "assistant", "content": target})
            body["extra_body"] = {"prompt_logprobs": 0, "continue_final_message": True,
                                  "add_generation_prompt": False}
        else:
            body.update(logprobs=True, top_logprobs=scoring.top_logprobs)
            if scoring.target_token_ids:
                body["extra_body"] = {"return_tokens_as_token_ids": True}
        return body

    def _greedy_body(self, rendered: RenderedInput, image_url: str) -> dict[str, Any]:
        """The chat-completion arguments of the model's own answer: a few tokens at temperature 0, no
        log-probabilities."""
        content = [{"type": "image_url", "image_url": {"url": image_url, "detail": self.options.render.detail}},
                   {"type": "text", "text": rendered.prompt}]
        return {"model": self.options.endpoint.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": GREEDY_MAX_TOKENS, "temperature": 0.0}

    def _key(self, rendered: RenderedInput, target: str) -> str:
        return self._hash(self._body(rendered, "sha256:" + rendered.pixel_digest(), target))

    def _hash(self, body: dict[str, Any]) -> str:
        """The cache key: credentials pick who pays, not what the model answers, so only the display URL counts."""
        material = json.dumps({"base_url": self.options.endpoint.url.display, "body": body}, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()

    def _tokens(self, state: _InstanceState, rendered: RenderedInput) -> int:
        seen = state.observed_tokens
        if seen is None:
            seen = estimate_prompt_tokens(rendered.prompt, *rendered.pixels.shape[:2], self.options.render.detail)
        return seen + self.options.endpoint.max_tokens

    @staticmethod
    def _observe(state: _InstanceState, answers: list[Answer]) -> None:
        tokens = [a.prompt_tokens for a in answers if a.prompt_tokens]
        if tokens:
            state.observed_tokens = int(np.mean(tokens))

    # -- the contract ----------------------------------------------------------------------

    def score(self, instance: PreparedInstance[_InstanceState], masks: np.ndarray, call: ScoreCall) -> ScoreResult:
        state: _InstanceState = instance.state
        target = instance.decoded.target.strip()
        keys = [self._key(state.renderer.render(mask), target) for mask in masks]
        cached = self._lookup(state, keys)
        first_miss: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key not in cached:
                first_miss.setdefault(key, row)
        if call.dry_run:
            return self._estimate(state, masks, first_miss, sum(key in cached for key in keys))
        pending = [self._pending(state, masks[row], key, target) for key, row in first_miss.items()]
        answers, usage = self._settle(state, keys, cached, pending, call)
        scored = [score(answers[key], target, self.options.scoring) for key in keys]
        values = np.array([v for v, _ in scored], dtype=np.float64)
        bounded = np.array([b for _, b in scored], dtype=bool)
        self.metrics.bounded.inc(int(bounded.sum()))
        usage.bounded = int(bounded.sum())
        return ScoreResult(values, bounded, usage)

    def _pending(self, state: _InstanceState, mask: np.ndarray, key: str, target: str) -> Pending:
        rendered = state.renderer.render(mask)

        def body() -> dict[str, Any]:
            return self._body(rendered, rendered.data_url(), target)

        return Pending(key, body, self._tokens(state, rendered), target)

    def answer(self, instance: PreparedInstance[_InstanceState], candidates: Sequence[str],
               call: ScoreCall) -> AnswerResult:
        """With candidates: each scored as Score scores the full coalition with it as the target (one request
        serves them all unless prompt log-probabilities need one each), the highest wins. Without: one greedy
        completion at temperature 0, cached like any paid answer, its text cut by the answer pattern."""
        state: _InstanceState = instance.state
        if candidates:
            if self.options.scoring.target_token_ids:
                raise InvalidArgument("with target token ids every candidate would get the same score: this adapter "
                                      "scores fixed tokens, so it cannot choose among candidates")
            for k, candidate in enumerate(candidates):
                self._check_scorable(candidate.strip(), f"candidate {k}")
            targets = [c.strip() for c in candidates]
            rendered = state.renderer.render(np.ones(instance.num_players, dtype=bool))
            pending = [Pending(self._key(rendered, t), lambda t=t: self._body(rendered, rendered.data_url(), t),
                               self._tokens(state, rendered), t) for t in targets]
            keys = [p.key for p in pending]
            cached = self._lookup(state, keys)
            misses = {p.key: p for p in pending if p.key not in cached}  # top log-probabilities: one key serves all
            answers, usage = self._settle(state, keys, cached, list(misses.values()), call)
            scored = [score(answers[p.key], t, self.options.scoring) for p, t in zip(pending, targets)]
            usage.bounded = sum(b for _, b in scored)
            return argmax_answer(candidates, [v for v, _ in scored], usage)
        rendered = state.renderer.render(np.ones(instance.num_players, dtype=bool))
        key = self._hash(self._greedy_body(rendered, "sha256:" + rendered.pixel_digest()))
        tokens = self._tokens(state, rendered) - self.options.endpoint.max_tokens + GREEDY_MAX_TOKENS
        pending = Pending(key, lambda: self._greedy_body(rendered, rendered.data_url()), tokens, "", greedy=True)
        cached = self._lookup(state, [key])
        answers, usage = self._settle(state, [key], cached, [] if key in cached else [pending], call)
        raw = answers[key].text
        answer, note = self.answer_pattern.extract(raw)
        return AnswerResult(answer, raw=raw, how=f"greedy at temperature 0, {note}", usage=usage)

    def _lookup(self, state: _InstanceState, keys: list[str]) -> dict[str, Answer]:
        """The answers the cache holds for ``keys``, observed for the instance's token estimates."""
        cached = self.cache.get_many(keys)
        self._observe(state, list(cached.values()))
        return cached

    def _settle(self, state: _InstanceState, keys: list[str], cached: dict[str, Answer], pending: list[Pending],
                call: ScoreCall) -> tuple[dict[str, Answer], common_pb2.Usage]:
        """Every key's answer: ``cached``, and ``pending`` (the distinct misses) paid for now; the usage counts as
        cache hits every key this call did not pay for (stored before, or paid for meanwhile by another call)."""
        self.metrics.cache_hits.inc(sum(key in cached for key in keys))
        self.metrics.cache_misses.inc(len(pending))
        paid, usage = self.endpoint.fetch(pending, call.job, call.cancelled, call.deadline) if pending \
            else ({}, common_pb2.Usage())
        self._observe(state, list(paid.values()))
        usage.cache_hits = len(keys) - usage.requests
        return {**cached, **paid}, usage

    def _estimate(self, state: _InstanceState, masks: np.ndarray, misses: dict[str, int],
                  hits: int) -> ScoreResult:
        """What paying for the misses would cost, from observed or estimated tokens."""
        max_tokens = self.options.endpoint.max_tokens
        per_request = self._tokens(state, state.renderer.render(masks[0])) - max_tokens if len(masks) else 0
        prompt, completion = per_request * len(misses), max_tokens * len(misses)
        price = self.options.price
        usage = common_pb2.Usage(requests=len(misses), cache_hits=hits, prompt_tokens=prompt,
                                 completion_tokens=completion,
                                 cost=price.cost(prompt, completion) if price else 0.0)
        return ScoreResult(np.zeros(len(masks)), None, usage)
