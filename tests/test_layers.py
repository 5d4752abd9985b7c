"""The layers' imports point one way (math <- rpc <- explainer / adapters <- client), and the architecture
document names files that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each layer, and the imports it must never make.
FORBIDDEN = {
    "service/math": ("grpc", "google", "multishap.v1", "multishap.service.rpc", "multishap.service.explainer",
                     "multishap.adapters", "multishap.client", "prometheus_client"),
    "service/rpc": ("multishap.service.explainer", "multishap.adapters", "multishap.client"),
    "service/explainer": ("multishap.adapters", "multishap.client"),
    "adapters": ("multishap.service.explainer", "multishap.client"),
}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_imports_point_one_way(layer):
    wrong = [(str(p.relative_to(ROOT)), name) for p in sorted((ROOT / layer).rglob("*.py")) for name in imports(p)
             if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])]
    assert wrong == []


def test_the_architecture_document_names_files_that_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:service|adapters|client|proto)/[\w/]+\.py)`", text))
    assert len(named) >= 14 and sorted(p for p in named if not (ROOT / p).exists()) == []
