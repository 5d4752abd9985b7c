"""Admission of explanations: a fixed number run at once, a bounded queue waits for a slot.

A request that finds every slot taken waits in turn (first come, first served) for at most
the queue's wait and never past its own deadline; when the queue is full or the wait runs
out it is refused with RESOURCE_EXHAUSTED carrying a retry delay (pushback), estimated from
how long recent explanations took. A waiting request that is cancelled leaves the queue at
once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from multishap.service.rpc.errors import ResourceExhausted, Unavailable

# Pushback delays are kept within these bounds (seconds).
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 0.5, 30.0
_POLL_S = 0.05


class Admission:
    """``running`` slots and a FIFO queue of at most ``queued`` waiters."""

    def __init__(self, running: int, queued: int, max_wait_s: float) -> None:
        self.running, self.queued, self.max_wait_s = running, queued, max_wait_s
        self._active = 0
        self._waiting: deque[object] = deque()
        self._cond = threading.Condition()
        self._mean_seconds = 1.0
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def retry_after(self) -> float:
        """Seconds until a slot is likely free: the mean explanation time per slot, times the queue ahead."""
        ahead = self.waiting + 1
        estimate = self._mean_seconds * math.ceil(ahead / self.running)
        return min(max(estimate, MIN_RETRY_AFTER), MAX_RETRY_AFTER)

    def close(self) -> None:
        """Admit nothing more: waiters and newcomers are refused as UNAVAILABLE (shutting down)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; retry on another replica")

    def _refuse(self, why: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"the server is busy: {why} (max_concurrent_explanations = {self.running}, "
            f"max_queued_explanations = {self.queued}); retry later", retry_after=self.retry_after(),
            limit="max_queued_explanations")

    @contextmanager
    def slot(self, deadline: Optional[float], stopped: Callable[[], bool]) -> Iterator[None]:
        """Hold a slot for the body; wait in the queue until ``deadline`` (monotonic) or the
        queue's wait, or until ``stopped()`` says the caller went away."""
        self._acquire(deadline, stopped)
        start = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.monotonic() - start)
                self._cond.notify_all()

    def _acquire(self, deadline: Optional[float], stopped: Callable[[], bool]) -> None:
        with self._cond:
            self._check_open()
            if self._active < self.running and not self._waiting:
                self._active += 1
                return
            if len(self._waiting) >= self.queued:
                raise self._refuse(f"{self._active} explanations are running and {len(self._waiting)} are waiting")
            ticket = object()
            self._waiting.append(ticket)
            entered = time.monotonic()
            give_up = entered + self.max_wait_s
            if deadline is not None:
                give_up = min(give_up, deadline)
            try:
                while not (self._waiting[0] is ticket and self._active < self.running):
                    self._check_open()
                    if stopped():
                        raise self._refuse("the caller went away while waiting")
                    if time.monotonic() >= give_up:
                        raise self._refuse(f"no slot came free within {time.monotonic() - entered:.3g} s")
                    self._cond.wait(_POLL_S)
                self._active += 1
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
