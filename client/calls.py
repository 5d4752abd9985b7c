"""One streaming call's run, transport aside: which failures are retried and after how long, what timeout each
attempt gets, what each event means, and the result; the blocking and asyncio clients only send and wait."""

from __future__ import annotations

import time
from typing import Any, Optional

import grpc

from multishap.service import defaults

from .errors import ExplainerError, InternalError
from .progress import CallProgress, ProgressUpdate
from .requests import Call


class CallRetries:
    """The retry decision for one call: which errors to retry, how long to wait, and what timeout each attempt
    gets so that all of them together stay within the caller's."""

    def __init__(self, timeout: Optional[float], max_retries: int) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.max_retries, self.retries = max_retries, 0

    def timeout(self) -> Optional[float]:
        """Seconds left for the next attempt (None: no deadline)."""
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def delay_after(self, err: ExplainerError) -> Optional[float]:
        """Seconds to wait before retrying ``err`` (a RetryInfo delay, at most ``MAX_RETRY_DELAY_S``); None when
        it carries no RetryInfo, the retries are used up, or the wait would pass the deadline."""
        delay = None if err.retry_after is None else min(err.retry_after, defaults.MAX_RETRY_DELAY_S)
        left = self.timeout()
        if delay is None or self.retries >= self.max_retries or (left is not None and delay >= left):
            return None
        self.retries += 1
        return delay


class Exchange:
    """The state of one call across its attempts; a context manager that closes its progress bar."""

    def __init__(self, call: Call, timeout: Optional[float], max_retries: int) -> None:
        self.call = call
        self.retries = CallRetries(timeout if call.timeout is None else call.timeout, max_retries)
        self.progress = CallProgress(call.progress, call.label)
        self._result: Optional[Any] = None

    def __enter__(self) -> "Exchange":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.close()

    def timeout(self) -> Optional[float]:
        """The timeout of the next attempt."""
        return self.retries.timeout()

    def receive(self, event: Any) -> bool:
        """Take one event of the stream; True once it was the result."""
        if event.WhichOneof("event") == "progress":
            self.progress(ProgressUpdate.from_proto(event.progress))
            return False
        self._result = getattr(event, self.call.result_field)
        return True

    def result(self) -> Any:
        """The SDK's result of the call; InternalError when the stream ended without one."""
        if self._result is None:
            raise InternalError("INTERNAL", "the stream ended without a result")
        return self.call.convert(self._result)

    def retry_delay(self, err: grpc.RpcError) -> float:
        """Seconds to wait before the next attempt after ``err``; raises it as an ExplainerError when it is not
        retried."""
        error = ExplainerError.from_rpc(err)
        delay = self.retries.delay_after(error)
        if delay is None:
            raise error from None
        return delay
