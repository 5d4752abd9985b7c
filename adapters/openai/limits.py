"""Request-rate and spending limits for a paid endpoint.

``RateLimiter`` spaces request starts evenly, with no burst: at r per minute, starts are
at least 60/r seconds apart, so any minute holds at most r of them, and a token budget per
minute works the same way with each request's estimated tokens as its weight. A 429 that
says how long to wait pauses every request.

``SpendLedger`` caps what one explanation (a Score request's ``job``; requests without one
share the empty job) may spend: a number of paid requests, counted as each request is sent,
and a cost, checked before each request (so it can be exceeded by at most the requests
already in flight).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional

from multishap.service.rpc.errors import ResourceExhausted

from .cache import ScoreCache


class RateLimiter:
    """At most ``per_minute`` units per minute, spread evenly; used from one event loop.

    Waiters are served one at a time, first come first served, and the next start is
    counted from when a waiter actually went, so a waiter that wakes up late (a busy
    loop) delays the ones after it instead of letting them bunch up.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive; got {per_minute}")
        self.per_minute = per_minute
        self._interval = 60.0 / per_minute
        self._next = 0.0
        self._clock, self._sleep = clock, sleep
        self._turn = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> float:
        """Wait for ``amount`` units; returns the seconds waited."""
        async with self._turn:
            start = self._clock()
            while (wait := self._next - self._clock()) > 0:
                await self._sleep(wait)
            now = self._clock()
            self._next = now + amount * self._interval
            return max(0.0, now - start)

    def pause(self, seconds: float) -> None:
        """Start nothing for ``seconds`` (the endpoint asked us to wait)."""
        self._next = max(self._next, self._clock() + seconds)


@dataclass(frozen=True)
class Price:
    """Price per million tokens, in the price table's currency."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


def load_price(path: Path, model: str) -> Price:
    """The model's price from a TOML table: ``[models."NAME"] input = 2.5  output = 10.0`` per 1M tokens."""
    try:
        table = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"could not read the price table {path}: {exc}") from None
    entry = table.get("models", {}).get(model)
    if entry is None:
        known = ", ".join(sorted(table.get("models", {}))) or "none"
        raise ValueError(f"the price table {path} has no entry for model {model!r} (it has: {known})")
    try:
        return Price(float(entry["input"]), float(entry["output"]))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"the price table entry for {model!r} needs numbers 'input' and 'output' "
                         "(per million tokens)") from None


class SpendLedger:
    """Paid requests and cost per explanation, refused with RESOURCE_EXHAUSTED past the caps.

    Kept in the answer store, so adapter replicas sharing its file share each allowance.
    Without caps nothing is recorded.
    """

    def __init__(self, store: ScoreCache, max_requests: Optional[int], max_cost: Optional[float]) -> None:
        if max_requests is not None and max_requests < 1:
            raise ValueError(f"max_requests must be at least 1; got {max_requests}")
        if max_cost is not None and max_cost <= 0:
            raise ValueError(f"max_cost must be positive; got {max_cost}")
        self.store, self.max_requests, self.max_cost = store, max_requests, max_cost

    @property
    def capped(self) -> bool:
        return self.max_requests is not None or self.max_cost is not None

    def reserve(self, job: str) -> None:
        """Count one paid request for ``job``, or refuse it when a cap is reached."""
        if not self.capped:
            return
        spent = self.store.reserve(job, self.max_requests, self.max_cost)
        if spent is None:
            return
        requests, cost = spent
        again = "the answers so far are cached, so raising the limit and running it again pays only for the rest"
        if self.max_requests is not None and requests >= self.max_requests:
            raise ResourceExhausted(f"this explanation has used its {self.max_requests} paid requests "
                                    f"(--max-requests); {again}", limit="max_requests")
        raise ResourceExhausted(f"this explanation has spent {cost:.4f} of its {self.max_cost:g} (--max-cost); {again}",
                                limit="max_cost")

    def charge(self, job: str, cost: float) -> None:
        if self.capped:
            self.store.charge(job, cost)
