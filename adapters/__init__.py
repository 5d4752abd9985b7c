"""Adapters: Scorer servers in front of models (synthetic games, Hugging Face models, OpenAI-compatible endpoints)."""
