"""Adapters: scorers in front of models; for now the synthetic games."""
