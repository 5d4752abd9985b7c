"""Deterministic synthetic games with closed-form truth (the synthetic adapter's backend)."""
