"""Adapter for OpenAI-compatible chat endpoints that return log-probabilities."""

try:
    from .backend import OpenAIBackend, OpenAIOptions
except ModuleNotFoundError as err:
    if err.name not in ("openai", "tenacity"):
        raise
    raise ModuleNotFoundError(f"the openai adapter needs the {err.name} package: pip install 'multishap[openai]'",
                              name=err.name) from err
from .endpoint import EndpointConfig
from .limits import Price, load_price
from .render import RenderOptions
from .retry import RetryPolicy
from .scoring import ScoringOptions

__all__ = ["EndpointConfig", "OpenAIBackend", "OpenAIOptions", "Price", "RenderOptions", "RetryPolicy",
           "ScoringOptions", "load_price"]
