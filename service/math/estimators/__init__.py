"""Cross-modal Shapley interaction estimators over one batched value-function contract.

``value_fn(masks)`` takes a bool array of shape (B, m + n) - players 0..m-1 are image
patches (row-major over the grid), m..m+n-1 text tokens, True = present - and returns a
float64 array of shape (B,). Every estimator deduplicates coalitions, calls ``value_fn`` in
batches of at most ``max_batch`` rows, never evaluates more than ``budget`` distinct
coalitions, and returns bit-identical results for the same seed whatever the batch size.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from multishap.service.math.estimators import derivative_regression, pair_sampling
from multishap.service.math.validation import ArgumentError, check_game_size, check_int, check_value_fn
from multishap.service.math.estimators.coalitions import ProgressCallback, ValueFunction
from multishap.service.math.estimators.exact import MAX_EXACT_PLAYERS, exact_estimate
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service import defaults

__all__ = [
    "InteractionEstimate",
    "METHODS",
    "INDICES",
    "exact_interactions",
    "estimate_interactions",
    "choose_method",
]

METHODS = ("auto", "exact", "multishap", "kernel")
INDICES = ("SII", "BII")
# Largest game "auto" solves by enumeration when the budget covers every coalition.
AUTO_EXACT_PLAYERS = 20
# Largest game any estimator takes: beyond about 1000 players the binomial coefficients of
# the size distributions overflow float64.
MAX_PLAYERS = 1000


def _check_common(value_fn: object, m: object, n: object, index: object, max_batch: object) -> tuple[int, int, int]:
    check_value_fn(value_fn)
    m, n = check_game_size(m, n)
    if m + n > MAX_PLAYERS:
        raise ArgumentError(f"the estimators take at most {MAX_PLAYERS} players; this game has {m + n}")
    if index not in INDICES:
        raise ArgumentError(f"index must be one of {INDICES}; got {index!r}")
    return m, n, check_int("max_batch", max_batch, 1, " (rows per value_fn call)")


def exact_interactions(
    value_fn: ValueFunction,
    m: int,
    n: int,
    index: str = "SII",
    max_batch: int = defaults.MAX_BATCH,
    progress: Optional[ProgressCallback] = None,
) -> np.ndarray:
    """Exact (m, n) cross-modal interaction matrix by enumerating all 2^(m+n) coalitions."""
    m, n, max_batch = _check_common(value_fn, m, n, index, max_batch)
    return exact_estimate(value_fn, m, n, index, max_batch, progress).phi


def choose_method(m: int, n: int, budget: int, index: str = "SII") -> str:
    """The method ``auto`` uses: exact when the budget covers every coalition of a small
    game, else derivative-game regression (the most accurate per evaluation on every game
    family in ``bench/estimators.py``)."""
    n_players = m + n
    if n_players <= AUTO_EXACT_PLAYERS and budget >= 1 << n_players:
        return "exact"
    return "kernel"


def _min_budget(method: str, m: int, n: int) -> int:
    if method == "exact":
        return 1 << (m + n)
    if method == "multishap":
        return pair_sampling.min_budget(m, n)
    return derivative_regression.min_budget(m, n)


def estimate_interactions(
    value_fn: ValueFunction,
    m: int,
    n: int,
    method: str = "auto",
    budget: int = defaults.BUDGET,
    seed: int = 0,
    index: str = "SII",
    max_batch: int = defaults.MAX_BATCH,
    progress: Optional[ProgressCallback] = None,
) -> InteractionEstimate:
    """Estimate the (m, n) cross-modal interaction matrix within ``budget`` coalitions.

    ``method``: "exact" (enumeration), "multishap" (Algorithm 1, SII-correct sampling;
    uniform subsets for BII), "kernel" (regression on derivative games) or "auto".
    ``progress(done, budget)`` is called after every batch sent to ``value_fn``.
    """
    m, n, max_batch = _check_common(value_fn, m, n, index, max_batch)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {METHODS}; got {method!r}")
    budget = check_int("budget", budget, 1, " (distinct coalitions to evaluate)")
    seed = check_int("seed", seed, 0)
    if method == "auto":
        method = choose_method(m, n, budget, index)
    if method == "exact" and m + n > MAX_EXACT_PLAYERS:
        raise ArgumentError(
            f"exact enumeration is limited to {MAX_EXACT_PLAYERS} players; this game has {m + n}"
        )
    needed = _min_budget(method, m, n)
    if budget < needed:
        raise ArgumentError(
            f"budget {budget} is too small for one step of method {method!r} with "
            f"{m} patches and {n} tokens: it needs at least {needed} coalitions"
        )
    if method == "exact":
        est = exact_estimate(value_fn, m, n, index, max_batch, progress)
        return InteractionEstimate(**{**est.__dict__, "seed": seed, "budget": budget})
    run = pair_sampling.pair_sampling_estimate if method == "multishap" else (
        derivative_regression.derivative_regression_estimate
    )
    return run(value_fn, m, n, budget, seed, index, max_batch, progress)
