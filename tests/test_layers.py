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
    "service/audit": ("grpc", "google", "multishap.v1", "multishap.service.rpc", "multishap.service.explainer",
                      "multishap.adapters", "multishap.client", "prometheus_client"),
    "service/rpc": ("multishap.service.explainer", "multishap.adapters", "multishap.client"),
    "service/explainer": ("multishap.adapters", "multishap.client"),
    "adapters": ("multishap.service.explainer", "multishap.client"),
}


# The client's servers-starting commands, which may import the servers.
STARTS_SERVERS = ("client/demo.py", "client/cli/")


def package_of(path: Path) -> list[str]:
    """The dotted package a source file is in (``service/rpc/x.py`` -> multishap.service.rpc)."""
    return ["multishap", *path.relative_to(ROOT).parent.parts]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too), relative ones
    resolved against the file's package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package_of(path)[: len(package_of(path)) - node.level + 1] if node.level else []
            found.add(".".join(base + ([node.module] if node.module else [])))
    return found


def wrong_imports(layer: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), name) for p in sorted((ROOT / layer).rglob("*.py")) for name in imports(p)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
            and not str(p.relative_to(ROOT)).startswith(STARTS_SERVERS)]


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_imports_point_one_way(layer):
    assert wrong_imports(layer, FORBIDDEN[layer]) == []


def test_the_sdk_never_imports_a_server():
    assert wrong_imports("client", ("multishap.service.explainer", "multishap.adapters")) == []


def test_relative_imports_are_resolved():
    assert "multishap.client.errors" in imports(ROOT / "client" / "fanout.py")


def test_the_architecture_document_names_files_that_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:service|adapters|client|proto)/[\w/]+\.py)`", text))
    assert len(named) >= 14 and sorted(p for p in named if not (ROOT / p).exists()) == []
