"""Hugging Face and PyTorch models behind the Scorer contract (needs torch and transformers)."""
