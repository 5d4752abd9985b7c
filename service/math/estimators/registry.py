"""The estimators by name, and ``auto``: what validation, the CLI's help and the README's table read.

Adding an estimator is one module with an :class:`~.base.Estimator` and one line in ``ESTIMATORS``; nothing else names the methods.
"""

from __future__ import annotations

from multishap.service.math.estimators.base import INDICES, Estimator
from multishap.service.math.estimators.controlled import CONTROLLED
from multishap.service.math.estimators.exact import EXACT
from multishap.service.math.estimators.kernel import KERNEL
from multishap.service.math.estimators.multishap import MULTISHAP
from multishap.service.math.estimators.pilot import PILOT
from multishap.service.math.estimators.product import PRODUCT
from multishap.service.math.estimators.sparse import SPARSE

ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (EXACT, MULTISHAP, KERNEL, CONTROLLED, PILOT, SPARSE,
                                                          PRODUCT)}
AUTO = "auto"
METHODS = (AUTO, *ESTIMATORS)
# Largest game "auto" solves by enumeration when the budget covers every coalition.
AUTO_EXACT_PLAYERS = 20
# What "auto" picks when enumeration is out of reach: sparse recovery, which falls back to `pilot`.
AUTO_SAMPLER = "sparse"
# What "auto" picks instead with a precision target, whose rounds need draws that nest across budgets.
AUTO_NESTED_SAMPLER = "controlled"
# What "auto" picks for a budget in encoder passes at a target that scores product designs.
AUTO_PRODUCT_SAMPLER = "product"
AUTO_SUMMARY = (f"exact when the budget covers a game of ≤ {AUTO_EXACT_PLAYERS} players; {AUTO_PRODUCT_SAMPLER} for a "
                f"budget in encoder passes at a dual encoder; {AUTO_NESTED_SAMPLER} with a `target_stderr`; "
                f"else {AUTO_SAMPLER} (which falls back to pilot when the game is not sparse)")


def choose_method(m: int, n: int, budget: int, index: str = "SII", nested: bool = False,
                  factorised: bool = False) -> str:
    """The method ``auto`` uses: exact when the budget covers every coalition of a small game;
    ``AUTO_PRODUCT_SAMPLER`` when ``factorised`` (a budget in encoder passes at a target that scores
    product designs) and no precision target; ``AUTO_NESTED_SAMPLER`` when ``nested`` (draws must nest
    across budgets); else ``AUTO_SAMPLER``."""
    if m + n <= AUTO_EXACT_PLAYERS and budget >= 1 << (m + n) and not factorised:
        return "exact"
    if factorised and not nested:
        return AUTO_PRODUCT_SAMPLER
    return AUTO_NESTED_SAMPLER if nested else AUTO_SAMPLER


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
