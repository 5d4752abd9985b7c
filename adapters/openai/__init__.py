"""Adapter for OpenAI-compatible chat endpoints that return log-probabilities."""

from .backend import OpenAIBackend, OpenAIOptions
from .endpoint import EndpointConfig
from .limits import Price, load_price
from .render import RenderOptions
from .retry import RetryPolicy
from .scoring import ScoringOptions

__all__ = ["EndpointConfig", "OpenAIBackend", "OpenAIOptions", "Price", "RenderOptions", "RetryPolicy",
           "ScoringOptions", "load_price"]
