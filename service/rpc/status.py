"""The one table from exception classes to gRPC status codes, used by the interceptor.

Every class a server raises on purpose is listed; the most specific listed base of an
exception decides. Anything else is a bug on our side: INTERNAL, with an error id that the
reply carries and the log records beside the traceback, so the caller is never blamed for it.
"""

from __future__ import annotations

import grpc

from multishap.service.math.validation import ArgumentError
from multishap.service.rpc import errors

STATUS_CODES: dict[type, grpc.StatusCode] = {
    ArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.TargetFailed: grpc.StatusCode.INTERNAL,
}


def status_code(exc: BaseException) -> grpc.StatusCode | None:
    """The status code of a deliberate error, or None when ``exc`` is a bug (not in the table)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return None
