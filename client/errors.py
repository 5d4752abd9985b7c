"""The SDK's exceptions: one class per gRPC status code under :class:`ExplainerError`, built from a failed call
with what its rich status (``grpc-status-details-bin``) says: the RetryInfo delay and QuotaFailure violations."""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

# How the server's INTERNAL messages end: the id its log keeps beside the traceback.
ERROR_ID = re.compile(r"\(error id ([0-9a-f]{12})\)$")


class ExplainerError(Exception):
    """An error status from the explainer: ``code`` (e.g. "NOT_FOUND"), ``details``, and
    ``retry_after``, the seconds the server asked the caller to wait before trying again (None: do not)."""

    def __init__(self, code: str, details: str, retry_after: Optional[float] = None) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details, self.retry_after = code, details, retry_after

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> "ExplainerError":
        """The error of the class for ``err``'s status code, with its rich status details read."""
        code = err.code().name
        return ERRORS.get(code, UnexpectedStatusError).from_status(code, err.details() or "", rich_details(err))

    @classmethod
    def from_status(cls, code: str, details: str, rich: Sequence[Any]) -> "ExplainerError":
        """The error for a status code, its message and the ``google.protobuf.Any`` details of its rich status."""
        return cls(code, details, retry_delay(rich))


class InvalidArgumentError(ExplainerError):
    """The request is malformed or a field is out of its range (INVALID_ARGUMENT)."""


class NotFoundError(ExplainerError):
    """The request names something the server does not have, such as a target (NOT_FOUND)."""


class ResourceExhaustedError(ExplainerError):
    """Over a limit or overloaded (RESOURCE_EXHAUSTED); ``quota_violations`` lists (subject, description) of the
    limits that refused the call (the subject is the limit's key, e.g. "max_budget"), empty when none were named."""

    def __init__(self, code: str, details: str, retry_after: Optional[float] = None,
                 quota_violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(code, details, retry_after)
        self.quota_violations = list(quota_violations)

    @classmethod
    def from_status(cls, code: str, details: str, rich: Sequence[Any]) -> "ResourceExhaustedError":
        return cls(code, details, retry_delay(rich), quota_violations(rich))


class UnavailableError(ExplainerError):
    """The server or every replica of the target cannot take the call now (UNAVAILABLE)."""


class DeadlineExceededError(ExplainerError):
    """The call's deadline passed before its work finished (DEADLINE_EXCEEDED)."""


class CancelledError(ExplainerError):
    """The call was cancelled, by the caller or by a server shutting down (CANCELLED)."""


class UnauthenticatedError(ExplainerError):
    """The target's credentials were refused, such as an adapter's API key (UNAUTHENTICATED)."""


class PermissionDeniedError(ExplainerError):
    """The caller may not make this call (PERMISSION_DENIED)."""


class FailedPreconditionError(ExplainerError):
    """The request is valid but the target cannot serve it as configured (FAILED_PRECONDITION)."""


class UnimplementedError(ExplainerError):
    """The server does not offer this call (UNIMPLEMENTED)."""


class InternalError(ExplainerError):
    """The target answered wrongly or the server failed (INTERNAL); ``error_id`` is the id the server's log keeps
    for an unexpected failure, None when the message names none."""

    @property
    def error_id(self) -> Optional[str]:
        match = ERROR_ID.search(self.details)
        return match.group(1) if match else None


class UnexpectedStatusError(ExplainerError):
    """A status code the explainer does not send on purpose (UNKNOWN, ABORTED, DATA_LOSS, ...)."""


ERRORS: dict[str, type[ExplainerError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "CANCELLED": CancelledError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "UNIMPLEMENTED": UnimplementedError,
    "INTERNAL": InternalError,
}


def rich_details(err: grpc.RpcError) -> list[Any]:
    """The ``google.protobuf.Any`` details of the error's rich status; empty when it has none or they are unreadable."""
    try:
        status = rpc_status.from_call(err)
    except (ValueError, DecodeError):
        return []
    return [] if status is None else list(status.details)


def _unpacked(rich: Sequence[Any], message_type: type) -> list[Any]:
    """The details of ``message_type`` among ``rich``, unpacked."""
    found = []
    for detail in rich:
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


def retry_delay(rich: Sequence[Any]) -> Optional[float]:
    """The delay a ``google.rpc.RetryInfo`` among the details asks for; None when there is none."""
    infos = _unpacked(rich, error_details_pb2.RetryInfo)
    return max(infos[0].retry_delay.ToTimedelta().total_seconds(), 0.0) if infos else None


def quota_violations(rich: Sequence[Any]) -> list[tuple[str, str]]:
    """(subject, description) of every violation in the ``google.rpc.QuotaFailure`` details."""
    return [(v.subject, v.description) for failure in _unpacked(rich, error_details_pb2.QuotaFailure)
            for v in failure.violations]
