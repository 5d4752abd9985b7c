"""Which endpoint failures are retried, how long to wait, and the sentence a person reads.

Retried: 408, 409, 429 and 5xx answers, timeouts, connection failures and answers that are
not valid JSON (a proxy's error page, a cut-off body). Valid answers without
log-probabilities are not retried: the endpoint would bill each attempt for the same lack. Waits grow
exponentially with full jitter, unless the endpoint said how long to wait
(``retry-after-ms`` or ``retry-after``, in seconds or as an HTTP date), which is honoured.
Anything else (401, 403, 404, 400, ...) fails at once with a sentence: retrying a refused
key only adds load. Every sentence goes through ``Redactor`` so no credential (the API key, the
base URL's password and query values) ever leaves.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Iterable, Optional
from urllib.parse import quote

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_base

from multishap.service.rpc.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
)

from .scoring import MalformedAnswer, UnusableAnswer

RETRY_STATUSES = frozenset({408, 409, 429})
_MAX_MESSAGE = 300


REDACTED = "[redacted]"
_MIN_SECRET = 4  # shorter "secrets" (a query flag like ?x=1) would garble every text they are searched in

_PROTECTED: tuple[str, ...] = ()  # secrets removed from every log record of the process, longest first
_PROTECTED_LOCK = threading.Lock()


def _forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as given, stripped, percent-encoded and JSON-escaped; longest first, so none is left half-shown."""
    found = set()
    for secret in secrets:
        for text in (secret, secret.strip()):
            found.update((text, quote(text, safe=""), json.dumps(text)[1:-1]))
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redacting_factory(previous):
    """A log-record factory that removes every protected secret, tracebacks included."""

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        secrets = _PROTECTED
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return record
        if record.exc_info and record.exc_info[1] is not None:
            trace = "".join(traceback.format_exception(*record.exc_info))
            if any(secret in trace for secret in secrets):
                message, record.exc_info = f"{message}\n{trace}", None
        if any(secret in message for secret in secrets):
            record.msg, record.args = _redact(message, secrets), None
        return record

    return factory


class Redactor:
    """Removes secrets, in the forms text carries them in, from any text before it is logged, raised or exported."""

    def __init__(self, *secrets: str) -> None:
        self._secrets = _forms(secrets)

    def __call__(self, text: str) -> str:
        return _redact(text, self._secrets)

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` with the secrets taken out of its arguments (its message), since callers are shown it."""
        exc.args = tuple(self(arg) if isinstance(arg, str) else arg for arg in exc.args)
        return exc

    def protect_logs(self) -> None:
        """Redact the secrets from every log record of this process (one factory serves every secret)."""
        global _PROTECTED
        if not self._secrets:
            return
        with _PROTECTED_LOCK:
            if not _PROTECTED:
                logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
            _PROTECTED = tuple(sorted({*_PROTECTED, *self._secrets}, key=len, reverse=True))


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, MalformedAnswer)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    return False


def retry_after(exc: BaseException) -> Optional[float]:
    """Seconds the endpoint asked us to wait before trying again, if it said."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message or exc.message or "")
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def describe(exc: BaseException, redact: Redactor) -> str:
    """A short phrase for one failed attempt: what the endpoint did."""
    if isinstance(exc, openai.APITimeoutError):
        text = "no answer before the request timeout"
    elif isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        text = f"the connection failed ({type(cause).__name__ if cause else 'no detail'}: {cause or exc})"
    elif isinstance(exc, openai.APIStatusError):
        text = f"HTTP {exc.status_code}: {_server_message(exc)}"
    elif isinstance(exc, MalformedAnswer):
        text = f"a broken answer: {exc}"
    elif isinstance(exc, UnusableAnswer):
        text = f"an answer that cannot be scored: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(text)


def final_error(exc: BaseException, where: str, attempts: int, seconds: float, redact: Redactor) -> ServiceError:
    """The ServiceError that reaches the caller once an endpoint request has failed for good."""
    what = describe(exc, redact)
    if isinstance(exc, openai.AuthenticationError):
        return Unauthenticated(f"{where} refused the adapter's API key ({what}); set OPENAI_API_KEY or "
                               "--api-key-file of the adapter to a valid key")
    if isinstance(exc, openai.PermissionDeniedError):
        return PermissionDenied(f"{where} does not let this API key use the model ({what})")
    if isinstance(exc, UnusableAnswer):
        return FailedPrecondition(f"{where} gave {what}")
    if isinstance(exc, openai.NotFoundError):
        return FailedPrecondition(f"{where} has no such model or path ({what}); check --base-url and --model")
    if isinstance(exc, openai.APIStatusError) and not is_retryable(exc):
        return InvalidArgument(f"{where} refused the request ({what})")
    return Unavailable(f"{where} failed {attempts} times for one masked input over {seconds:.1f} s; "
                       f"last: {what}")


class wait_backoff_or_retry_after(wait_base):
    """Exponential backoff with full jitter, or the endpoint's retry-after plus up to 10% jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after(exc) if exc is not None else None
        if asked is not None:
            return asked * (1.0 + 0.1 * random.random())
        ceiling = min(self.maximum, self.initial * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(0.0, ceiling)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one masked input: attempts, waits, and a deadline over all of them."""

    max_attempts: int = 8
    initial_wait: float = 0.5
    max_wait: float = 30.0
    deadline: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1; got {self.max_attempts}")
        if self.deadline <= 0:
            raise ValueError(f"the deadline must be positive; got {self.deadline}")

    def retrying(self, deadline: float, before_sleep) -> AsyncRetrying:
        """A tenacity loop that stops after max_attempts or before passing ``deadline`` seconds."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(deadline),
            wait=wait_backoff_or_retry_after(self.initial_wait, self.max_wait),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
