"""Python SDK for the multishap explainer service."""

from .explanation import Explanation, FaithfulnessReport, Metrics, Target, Usage
from .sdk import AsyncExplainerClient, DatasetReport, ExplainerClient, ExplainerError, ProgressUpdate

__all__ = [
    "AsyncExplainerClient",
    "DatasetReport",
    "Explanation",
    "ExplainerClient",
    "ExplainerError",
    "FaithfulnessReport",
    "Metrics",
    "ProgressUpdate",
    "Target",
    "Usage",
]
