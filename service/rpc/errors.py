"""The errors servers raise, as plain exception classes; none of them knows a protocol.

Each class says what went wrong (a bad argument, an unknown target, an overload...) with a
message that is a sentence safe to show the caller. The one place that turns them into gRPC
status codes is the interceptor's table (:mod:`multishap.service.rpc.status`); the math
raises :class:`~multishap.service.math.validation.ArgumentError` for bad arguments, which
:class:`InvalidArgument` extends, and any other exception is a bug: INTERNAL with an error
id. A value the caller sent is quoted in a message only through :func:`shown`, which caps
it, so a huge field cannot blow up the reply's metadata.
"""

from __future__ import annotations

from typing import Optional

from multishap.service.math.validation import ArgumentError

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


class InvalidArgument(ServiceError, ArgumentError):
    """The request is malformed or a field is out of its range."""


class UndecodableRequest(InvalidArgument):
    """The request bytes are not the method's request message."""

    def __init__(self, method: str) -> None:
        super().__init__(f"the {method} request is not a valid protobuf message of its type")


class NotFound(ServiceError):
    """The request names something the server does not have (a target)."""


class ResourceExhausted(ServiceError):
    """Over a limit. ``limit`` names the configured limit that refused it (the reply carries it as
    google.rpc.QuotaFailure); with ``retry_after`` (seconds) the refusal is temporary (overload) and
    the reply carries that pushback as google.rpc.RetryInfo."""

    def __init__(self, message: str, retry_after: Optional[float] = None, limit: Optional[str] = None) -> None:
        super().__init__(message)
        self.retry_after, self.limit = retry_after, limit


class Unavailable(ServiceError):
    """A target or the server cannot take the call now; trying again later may work."""


class DeadlineExceeded(ServiceError):
    """The call's deadline passed before its work finished."""


class Cancelled(ServiceError):
    """The call was cancelled (by its client, or because the server is stopping)."""


class Unauthenticated(ServiceError):
    """Credentials were refused: the caller's bearer token, or a target's (e.g. an adapter's API key)."""


class MissingToken(Unauthenticated):
    """The call carries no bearer token where the server requires one."""

    def __init__(self) -> None:
        super().__init__("a bearer token is required (metadata authorization: Bearer <token>)")


class UnknownToken(Unauthenticated):
    """The call's bearer token is none of the server's."""

    def __init__(self) -> None:
        super().__init__("the bearer token is not valid")


class PermissionDenied(ServiceError):
    """The caller, or a target asked on its behalf, refused the call for lack of permission."""


class MethodNotAllowed(PermissionDenied):
    """A known caller called a method its token does not allow."""

    def __init__(self, identity: str, method: str) -> None:
        super().__init__(f"identity {identity!r} is not allowed to call {method}")


class FailedPrecondition(ServiceError):
    """The request is fine but the target cannot serve it as configured."""


class Unimplemented(ServiceError):
    """The target does not do what was asked (e.g. answer on its own), however the request is put."""


class TargetFailed(ServiceError):
    """The target answered, but wrongly (NaN scores, wrong count, an internal error)."""
