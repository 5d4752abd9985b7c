"""Errors that carry the gRPC status they map to; the message is a sentence for a person.

The math raises ``ValueError`` for bad arguments; servers raise these. One interceptor
(:mod:`multishap.service.runtime`) turns both into status codes.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base class: an error whose message is safe to show to the caller."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


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
