"""Python SDK for the multishap explainer service."""

from .errors import (CancelledError, DeadlineExceededError, ExplainerError, FailedPreconditionError, InternalError,
                     InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError,
                     UnauthenticatedError, UnavailableError, UnexpectedStatusError, UnimplementedError)
from .explanation import Explanation, FaithfulnessReport, Metrics, Target, Usage
from .sdk import AsyncExplainerClient, DatasetReport, ExplainerClient, ProgressUpdate

__all__ = [
    "AsyncExplainerClient",
    "CancelledError",
    "DatasetReport",
    "DeadlineExceededError",
    "Explanation",
    "ExplainerClient",
    "ExplainerError",
    "FailedPreconditionError",
    "FaithfulnessReport",
    "InternalError",
    "InvalidArgumentError",
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
