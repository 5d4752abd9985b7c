"""multishap: cross-modal Shapley interactions for vision-language models, as a service.

The package's parts live in subpackages: ``service`` (math, shared RPC runtime, explainer),
``adapters``, ``client`` and ``v1`` (the generated gRPC contract).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("multishap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
