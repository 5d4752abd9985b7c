"""Errors that carry the gRPC status they map to; the message is a sentence for a person.

The math raises ``ValueError`` for bad arguments; servers raise these. One interceptor
(:mod:`multishap.service.rpc.runtime`) turns both into status codes. A value the caller sent
is quoted in a message only through :func:`shown`, which caps it, so a huge field cannot
blow up the reply's metadata.
"""

from __future__ import annotations

from typing import Optional

import grpc

# Characters of a caller's value quoted in an error message.
ECHO_CHARS = 80


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the last one "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: how messages quote caller input."""
    return clip(repr(value), limit)


class ServiceError(Exception):
    """Base class: an error whose message is safe to show to the caller."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class UndecodableRequest(InvalidArgument):
    """The request bytes are not the method's request message."""

    def __init__(self, method: str) -> None:
        super().__init__(f"the {method} request is not a valid protobuf message of its type")


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(ServiceError):
    """Over a limit; with ``retry_after`` (seconds) the refusal is temporary (overload) and
    the reply carries that pushback as google.rpc.RetryInfo."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED


class Unauthenticated(ServiceError):
    """A target's credentials were refused (e.g. an adapter's API key)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(ServiceError):
    """The request is fine but the target cannot serve it as configured."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class TargetFailed(ServiceError):
    """The target answered, but wrongly (NaN scores, wrong count, an internal error)."""

    code = grpc.StatusCode.INTERNAL
