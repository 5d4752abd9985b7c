"""The estimators by name, and ``auto``: what validation, the CLI's help and the README's table read.

Adding an estimator is one module with an :class:`~.base.Estimator` and one line in ``ESTIMATORS``; nothing else names the methods.
"""

from __future__ import annotations

from multishap.service.math.estimators.base import INDICES, Estimator
from multishap.service.math.estimators.exact import EXACT
from multishap.service.math.estimators.kernel import KERNEL
from multishap.service.math.estimators.multishap import MULTISHAP

ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (EXACT, MULTISHAP, KERNEL)}
AUTO = "auto"
METHODS = (AUTO, *ESTIMATORS)
# Largest game "auto" solves by enumeration when the budget covers every coalition.
AUTO_EXACT_PLAYERS = 20
# What "auto" picks when enumeration is out of reach.
AUTO_SAMPLER = "kernel"
AUTO_SUMMARY = f"exact when the budget covers a game of ≤ {AUTO_EXACT_PLAYERS} players, else {AUTO_SAMPLER}"


def choose_method(m: int, n: int, budget: int, index: str = "SII") -> str:
    """The method ``auto`` uses: exact when the budget covers every coalition of a small game, else
    ``AUTO_SAMPLER``."""
    if m + n <= AUTO_EXACT_PLAYERS and budget >= 1 << (m + n):
        return "exact"
    return AUTO_SAMPLER


def method_help() -> str:
    """One line per method, for the CLI's ``--method`` help."""
    lines = [f"{name}: {e.summary}" for name, e in ESTIMATORS.items()]
    return "; ".join(lines + [f"{AUTO}: {AUTO_SUMMARY}"])


def markdown_table() -> str:
    """The README's table of methods, made from the registry (a test keeps the README equal to it)."""
    rows = ["| method | what it does | reports | index |", "|---|---|---|---|"]
    for name, e in ESTIMATORS.items():
        rows.append(f"| `{name}` | {e.description} | {e.reports} | {', '.join(e.indices)} |")
    rows.append(f"| `{AUTO}` (default) | {AUTO_SUMMARY} | as the method it picks | {', '.join(INDICES)} |")
    return "\n".join(rows)
