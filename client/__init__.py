"""Python SDK for the multishap explainer service."""

from .errors import (CancelledError, DeadlineExceededError, ExplainerError, FailedPreconditionError, InternalError,
                     InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError,
                     UnauthenticatedError, UnavailableError, UnexpectedStatusError, UnimplementedError)
from .explanation import Explanation, FaithfulnessReport, Metrics, Target, Usage
from .jobs import AsyncJobHandle, JobHandle, JobRow, JobStatus
from .sdk import AsyncExplainerClient, ClientTLS, DatasetReport, ExplainerClient, ProgressUpdate

__all__ = [
    "AsyncExplainerClient",
    "AsyncJobHandle",
    "CancelledError",
    "ClientTLS",
    "DatasetReport",
    "DeadlineExceededError",
    "Explanation",
    "ExplainerClient",
    "ExplainerError",
    "FailedPreconditionError",
    "FaithfulnessReport",
    "InternalError",
    "InvalidArgumentError",
    "JobHandle",
    "JobRow",
    "JobStatus",
    "Metrics",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressUpdate",
    "ResourceExhaustedError",
    "Target",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
    "UnimplementedError",
    "Usage",
]
