"""The paid side: chat-completion requests under a concurrency cap, rate limits and retries.

One asyncio event loop in its own thread owns the ``AsyncOpenAI`` client (its own retries
off: tenacity decides), the limiters and the in-flight table, so every Score request of
the adapter shares them. Each masked input is one request; each paid answer is stored in
the persistent cache before anything else sees it. When a request fails for good, when the
caller cancels, or when the adapter shuts down, no new request starts, the ones in flight
finish (and are stored), and the first failure is raised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import openai
from prometheus_client import CollectorRegistry, Counter, Histogram
from tenacity import RetryCallState

from multishap.service.rpc.errors import Cancelled, ServiceError, TargetFailed, Unavailable
from multishap.v1 import common_pb2

from .cache import ScoreCache
from .credentials import EndpointURL, clean_key, parse_base_url
from .limits import Price, RateLimiter, SpendLedger
from .retry import Redactor, RetryPolicy, describe, final_error, retry_after
from .scoring import Answer, MalformedAnswer, ScoringOptions, UnusableAnswer, parse_answer, parse_text

log = logging.getLogger("multishap.openai")
_MIN_ATTEMPT_S = 0.05  # an attempt with less time than this is not sent: it would be paid for and cut off


@dataclass(frozen=True)
class EndpointConfig:
    """Where to send requests and how hard to push; only the base URL's display form is ever shown."""

    base_url: str = field(repr=False)     # may carry user:password@ and ?key=... tokens
    model: str
    api_key: str = field(repr=False)
    timeout: float = 60.0                 # seconds per HTTP attempt
    concurrency: int = 8                  # requests in flight, all Score requests together
    rpm: Optional[float] = None           # requests per minute
    tpm: Optional[float] = None           # tokens per minute, each request weighed by its estimated tokens
    max_tokens: int = 1
    temperature: float = 0.0
    retry: RetryPolicy = RetryPolicy()
    url: EndpointURL = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_key", clean_key(self.api_key or "", "EndpointConfig(api_key=...)"))
        object.__setattr__(self, "url", parse_base_url(self.base_url))
        if self.api_key and self.url.auth:
            raise ValueError("the base URL carries a user name and password, which go out as HTTP Basic auth in "
                             "place of the API key (a request has one Authorization header): give one or the other")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {self.concurrency}")
        if self.timeout <= 0:
            raise ValueError(f"the request timeout must be positive; got {self.timeout}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1; got {self.max_tokens}")

    def secrets(self) -> tuple[str, ...]:
        """Every credential of this configuration, with the headers that carry them: text must never show one."""
        key = (self.api_key, f"Bearer {self.api_key}") if self.api_key else ()
        return key + self.url.secrets


@dataclass(frozen=True)
class Pending:
    """One masked input to pay for: its cache key, request body and estimated tokens; ``greedy``: a plain
    completion whose text is kept (the model's own answer), not log-probabilities."""

    key: str
    body: Callable[[], dict[str, Any]]  # built lazily: the PNG is encoded only when the request goes out
    tokens: int
    target: str
    greedy: bool = False


class _Halted(Exception):
    """A request that was never sent because its batch stopped."""


class EndpointMetrics:
    """Prometheus series of the endpoint side."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("multishap_openai_requests", "Endpoint requests by outcome (HTTP status, "
                                "timeout, connection, malformed)", ["status"], registry=registry)
        self.retries = Counter("multishap_openai_retries", "Requests sent again after a failure", ["reason"],
                               registry=registry)
        self.waits = Histogram("multishap_openai_rate_limit_wait_seconds", "Waits imposed by a limiter before "
                               "a request", ["limiter"], registry=registry,
                               buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300))
        self.tokens = Counter("multishap_openai_tokens", "Tokens billed by the endpoint", ["kind"], registry=registry)
        self.cost = Counter("multishap_openai_cost", "Spending in the price table's currency", registry=registry)
        self.latency = Histogram("multishap_openai_request_seconds", "Latency of one endpoint request",
                                 registry=registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.cache_hits = Counter("multishap_openai_cache_hits", "Scores answered from the persistent cache",
                                  registry=registry)
        self.cache_misses = Counter("multishap_openai_cache_misses", "Scores that needed an endpoint request",
                                    registry=registry)
        self.bounded = Counter("multishap_openai_bounded_scores", "Scores that are bounds: the target was not "
                               "among the top log-probabilities", registry=registry)


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, MalformedAnswer):
        return "malformed"
    if isinstance(exc, UnusableAnswer):
        return "unusable"
    return type(exc).__name__


class Endpoint:
    """Sends masked inputs to an OpenAI-compatible endpoint; thread-safe ``fetch``."""

    def __init__(self, config: EndpointConfig, scoring: ScoringOptions, cache: ScoreCache,
                 ledger: SpendLedger, price: Optional[Price], metrics: EndpointMetrics) -> None:
        self.config, self.scoring, self.cache = config, scoring, cache
        self.ledger, self.price, self.metrics = ledger, price, metrics
        self.redact = Redactor(*config.secrets())
        self.where = f"the endpoint (model {config.model!r})"  # no address in a reply: the log has the URL
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-endpoint", daemon=True)
        self._thread.start()
        self._closing = False
        self._close_lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._setup().result()

    def _run(self, coro: Awaitable) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _setup(self):
        async def setup() -> None:
            url = self.config.url
            self.client = openai.AsyncOpenAI(
                base_url=url.request, api_key=self.config.api_key or "none", default_query=dict(url.query) or None,
                http_client=openai.DefaultAsyncHttpxClient(auth=url.auth) if url.auth else None,
                max_retries=0, timeout=self.config.timeout)
            self.slots = asyncio.Semaphore(self.config.concurrency)
            # Without --rpm this limiter only holds requests back while the endpoint asked to wait.
            self.rpm = RateLimiter(self.config.rpm or math.inf)
            self.tpm = RateLimiter(self.config.tpm) if self.config.tpm else None
        return self._run(setup())

    # -- the thread-safe surface ----------------------------------------------------------

    def fetch(self, pending: list[Pending], job: str, cancelled: threading.Event,
              deadline: Optional[float]) -> tuple[dict[str, Answer], common_pb2.Usage]:
        """Pay for every pending input; raises the first failure once the requests in flight are done."""
        if self._closing or self._loop.is_closed():
            raise self._shutting_down()
        halt = threading.Event()
        future = self._run(self._fetch_all(pending, job, halt, deadline))
        while True:
            try:
                return future.result(timeout=0.05)
            except TimeoutError:
                if cancelled.is_set() and not halt.is_set():
                    halt.set()
                if not self._thread.is_alive():
                    raise self._shutting_down() from None
            except Exception as exc:  # noqa: BLE001 - whatever leaves is shown to the caller: no credential in it
                raise self.redact.scrub(exc)

    def _shutting_down(self) -> Unavailable:
        return Unavailable(f"the adapter for {self.where} is shutting down; the answers it was paid for are "
                           "cached, so the request can be sent again")

    def close(self) -> None:
        """Start nothing new, let the requests in flight finish and be stored, then stop."""
        with self._close_lock:
            if self._loop.is_closed():
                return

            async def drain() -> None:
                self._closing = True
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                await self.client.close()

            self._run(drain()).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    # -- inside the event loop ------------------------------------------------------------

    async def _fetch_all(self, pending: list[Pending], job: str, halt: threading.Event,
                         deadline: Optional[float]) -> tuple[dict[str, Answer], common_pb2.Usage]:
        spent = common_pb2.Usage()
        tasks = [asyncio.ensure_future(self._shared(p, job, halt, deadline, spent)) for p in pending]
        self._tasks.update(tasks)
        try:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
        answers: dict[str, Answer] = {}
        failures = []
        for p, outcome in zip(pending, outcomes):
            if isinstance(outcome, BaseException):
                failures.append(outcome)
            else:
                answers[p.key] = outcome
        real = [f for f in failures if not isinstance(f, _Halted)]
        if real:
            raise min(real, key=lambda f: getattr(f, "failed_at", math.inf))
        if failures:
            if self._closing:
                raise self._shutting_down()
            raise Cancelled("the Score request was cancelled; the answers already paid for are cached")
        return answers, spent

    async def _shared(self, p: Pending, job: str, halt: threading.Event, deadline: Optional[float],
                      spent: common_pb2.Usage) -> Answer:
        """One masked input: from the store if another batch has paid for it meanwhile, joined with an
        identical request in flight, or sent. A joined request that fails is tried again by this batch:
        its failure (another explanation's cap, deadline or cancellation) need not be this one's."""
        while (running := self._inflight.get(p.key)) is not None:
            try:
                return await asyncio.shield(running)
            except Exception:  # noqa: BLE001 - whatever stopped the other batch, this one tries itself
                continue
        stored = self.cache.get_many([p.key]).get(p.key)
        if stored is not None:
            return stored
        future = self._loop.create_future()
        self._inflight[p.key] = future
        try:
            answer = await self._one(p, job, halt, deadline, spent)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        else:
            future.set_result(answer)
            return answer
        finally:
            del self._inflight[p.key]

    def _stopped(self, halt: threading.Event) -> bool:
        return halt.is_set() or self._closing

    async def _one(self, p: Pending, job: str, halt: threading.Event, deadline: Optional[float],
                   spent: common_pb2.Usage) -> Answer:
        started = time.monotonic()
        budget = self.config.retry.deadline
        if deadline is not None:
            budget = min(budget, deadline - started)
        attempts = 0

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception()
            self.metrics.retries.labels(reason=_status_of(exc)).inc()
            spent.retries += 1
            asked = retry_after(exc)
            if asked is not None:
                self.rpm.pause(asked)
            log.info("retrying after %s (attempt %d)", describe(exc, self.redact), state.attempt_number)

        try:
            if budget <= 0:
                raise Unavailable(f"no time was left to ask {self.where} before the caller's deadline")
            async for attempt in self.config.retry.retrying(budget, before_sleep):
                with attempt:
                    async with self.slots:
                        body = await self._loop.run_in_executor(None, p.body)  # encode first: start on time
                        await self._wait_limits(p.tokens)
                        if self._stopped(halt):
                            raise _Halted()
                        remaining = budget - (time.monotonic() - started)
                        if remaining < _MIN_ATTEMPT_S:
                            raise Unavailable(f"the rate limits left no time to ask {self.where} before the "
                                              "deadline for this masked input")
                        if attempts == 0:
                            self.ledger.reserve(job)
                        attempts += 1
                        answer = await self._request(p, body, min(self.config.timeout, remaining), job, spent)
        except _Halted:
            raise
        except ServiceError as exc:
            halt.set()
            raise self._mark(exc) from None
        except (openai.OpenAIError, MalformedAnswer, UnusableAnswer) as exc:
            error = final_error(exc, self.where, attempts, time.monotonic() - started, self.redact)
            log.warning("%s (%s)", error, self.config.url.display)
            halt.set()
            raise self._mark(error) from None
        except BaseException:
            halt.set()
            raise
        return answer

    @staticmethod
    def _mark(error: ServiceError) -> ServiceError:
        error.failed_at = time.monotonic()  # type: ignore[attr-defined]
        return error

    async def _wait_limits(self, tokens: int) -> None:
        for name, limiter, amount in (("requests", self.rpm, 1.0), ("tokens", self.tpm, float(tokens))):
            if limiter is not None:
                waited = await limiter.acquire(amount)
                if waited > 0:
                    self.metrics.waits.labels(limiter=name).observe(waited)

    async def _request(self, p: Pending, body: dict[str, Any], timeout: float, job: str,
                       spent: common_pb2.Usage) -> Answer:
        """One HTTP attempt; a scorable answer is stored before it is returned, and every billed one counted."""
        start = time.perf_counter()
        try:
            raw = await self.client.chat.completions.with_raw_response.create(**body, timeout=timeout)
            try:
                data = json.loads(raw.content)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MalformedAnswer(f"the answer is not valid JSON ({exc})") from None
            try:
                answer = parse_text(data) if p.greedy else parse_answer(data, self.scoring, p.target)
            except UnusableAnswer as exc:
                self._account(exc.prompt_tokens, exc.completion_tokens, job, spent)
                raise
        except BaseException as exc:
            self.metrics.requests.labels(status=_status_of(exc)).inc()
            raise
        finally:
            self.metrics.latency.observe(time.perf_counter() - start)
        self.metrics.requests.labels(status=str(raw.status_code)).inc()
        try:
            self.cache.put(p.key, answer)
        except sqlite3.Error as exc:
            raise TargetFailed(f"a paid answer could not be stored in the cache {self.cache.path} ({exc}); "
                               "scoring stopped so that nothing more is paid for and lost") from None
        self._account(answer.prompt_tokens, answer.completion_tokens, job, spent)
        return answer

    def _account(self, prompt_tokens: int, completion_tokens: int, job: str, spent: common_pb2.Usage) -> None:
        cost = self.price.cost(prompt_tokens, completion_tokens) if self.price else 0.0
        spent.requests += 1
        spent.prompt_tokens += prompt_tokens
        spent.completion_tokens += completion_tokens
        spent.cost += cost
        self.metrics.tokens.labels(kind="prompt").inc(prompt_tokens)
        self.metrics.tokens.labels(kind="completion").inc(completion_tokens)
        self.metrics.cost.inc(cost)
        self.ledger.charge(job, cost)
