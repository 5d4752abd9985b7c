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

from multishap.service import defaults
from multishap.service.math.estimators.base import INDICES, Estimator
from multishap.service.math.estimators.coalitions import ProgressCallback, ValueFunction
from multishap.service.math.estimators.exact import MAX_EXACT_PLAYERS, exact_estimate
from multishap.service.math.estimators.registry import AUTO, ESTIMATORS, METHODS, choose_method
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service.math.validation import ArgumentError, check_game_size, check_int, check_value_fn

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "InteractionEstimate",
    "METHODS",
    "INDICES",
    "MAX_EXACT_PLAYERS",
    "exact_interactions",
    "estimate_interactions",
    "choose_method",
]


def _check_common(value_fn: object, m: object, n: object, index: object, max_batch: object) -> tuple[int, int, int]:
    check_value_fn(value_fn)
    m, n = check_game_size(m, n)
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


def estimate_interactions(
    value_fn: ValueFunction,
    m: int,
    n: int,
    method: str = defaults.METHOD,
    budget: int = defaults.BUDGET,
    seed: int = defaults.SEED,
    index: str = defaults.INDEX,
    max_batch: int = defaults.MAX_BATCH,
    progress: Optional[ProgressCallback] = None,
) -> InteractionEstimate:
    """Estimate the (m, n) cross-modal interaction matrix within ``budget`` distinct coalitions.

    ``method`` is a name in ``ESTIMATORS`` ("exact", "multishap", "kernel") or "auto";
    ``progress(done, budget)`` is called after every batch sent to ``value_fn``.
    """
    m, n, max_batch = _check_common(value_fn, m, n, index, max_batch)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {METHODS}; got {method!r}")
    budget = check_int("budget", budget, 1, " (distinct coalitions to evaluate)")
    seed = check_int("seed", seed, 0)
    estimator = ESTIMATORS[choose_method(m, n, budget, index) if method == AUTO else method]
    if index not in estimator.indices:
        raise ArgumentError(f"method {estimator.name!r} estimates {', '.join(estimator.indices)}; got {index!r}")
    if m + n > estimator.max_players:
        raise ArgumentError(f"method {estimator.name!r} takes at most {estimator.max_players} players; "
                            f"this game has {m + n}")
    needed = estimator.min_budget(m, n)
    if budget < needed:
        raise ArgumentError(
            f"budget {budget} is too small for one step of method {estimator.name!r} with "
            f"{m} patches and {n} tokens: it needs at least {needed} coalitions"
        )
    return estimator.estimate(value_fn, m, n, budget, seed, index, max_batch, progress)
