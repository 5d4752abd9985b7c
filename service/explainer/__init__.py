"""The Explainer server: a servicer that translates messages, over jobs that run the math
against targets (the adapters' Scorer servers)."""

from multishap.service.explainer.server import serve_explainer
from multishap.service.explainer.servicer import ExplainerServicer

__all__ = ["ExplainerServicer", "serve_explainer"]
