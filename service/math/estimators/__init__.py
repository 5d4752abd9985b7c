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
from multishap.service.math.costs import COALITIONS, CostModel, cost_model, product_function
from multishap.service.math.estimators.coalitions import BudgetExhausted, ProgressCallback, ValueFunction
from multishap.service.math.estimators.exact import MAX_EXACT_PLAYERS, exact_estimate
from multishap.service.math.estimators.precision import NESTED, estimate_to_precision
from multishap.service.math.estimators.product import PRODUCT
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
    "BUDGET_UNITS",
]

BUDGET_UNITS = ("coalitions", "cost")


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
    target_stderr: Optional[float] = None,
    budget_unit: str = "coalitions",
) -> InteractionEstimate:
    """Estimate the (m, n) cross-modal interaction matrix within ``budget`` distinct coalitions.

    ``method`` is a name in ``ESTIMATORS`` or "auto"; ``progress(done, budget)`` is called
    after every batch sent to ``value_fn``. With ``target_stderr``, scoring runs in rounds of
    growing budget and stops once every standard error is at most the target (see
    :mod:`.precision`). ``budget_unit="cost"`` counts the budget in the units of the value
    function's cost model (``value_fn.costs``, e.g. encoder passes) instead of coalitions.
    """
    m, n, max_batch = _check_common(value_fn, m, n, index, max_batch)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {METHODS}; got {method!r}")
    budget = check_int("budget", budget, 1, " (distinct coalitions to evaluate)")
    seed = check_int("seed", seed, 0)
    if budget_unit not in BUDGET_UNITS:
        raise ArgumentError(f"budget_unit must be one of {BUDGET_UNITS}; got {budget_unit!r}")
    if target_stderr is not None:
        if isinstance(target_stderr, bool) or not isinstance(target_stderr, (int, float)) \
                or not np.isfinite(target_stderr) or target_stderr <= 0:
            raise ArgumentError(f"target_stderr must be a positive finite number; got {target_stderr!r}")
        target_stderr = float(target_stderr)
    declared = cost_model(value_fn)
    factorised = budget_unit == "cost" and declared.factorised and product_function(value_fn) is not None
    chosen = choose_method(m, n, budget, index, target_stderr is not None, factorised) if method == AUTO else method
    estimator = ESTIMATORS[chosen]
    if index not in estimator.indices:
        raise ArgumentError(f"method {estimator.name!r} estimates {', '.join(estimator.indices)}; got {index!r}")
    if m + n > estimator.max_players:
        raise ArgumentError(f"method {estimator.name!r} takes at most {estimator.max_players} players; "
                            f"this game has {m + n}")
    costs = declared if budget_unit == "cost" else None
    needed = estimator.min_budget(m, n)
    if costs is not None:
        # One step's coalitions at the worst price, each bringing a new image and a new text; the product
        # design prices its own first round.
        needed = 0 if estimator is PRODUCT else needed * (costs.coalition + costs.image_encode + costs.text_encode)
    if budget < needed:
        unit = costs.unit if costs is not None else "coalitions"
        raise ArgumentError(
            f"budget {budget} is too small for one step of method {estimator.name!r} with "
            f"{m} patches and {n} tokens: it needs at least {needed:g} {unit}"
        )
    if estimator is PRODUCT and costs is None:
        costs = COALITIONS  # a budget in coalitions counts a product design's pairs
    try:
        return _run(estimator, value_fn, m, n, budget, seed, index, max_batch, progress, costs, target_stderr)
    except BudgetExhausted:
        cap = "" if costs is None or costs.max_coalitions is None else f", within {costs.max_coalitions} coalitions"
        raise ArgumentError(f"budget {budget} cannot pay for the method's first coalitions at this target's prices "
                            f"({declared.unit}{cap})") from None


def _run(estimator: Estimator, value_fn: ValueFunction, m: int, n: int, budget: int, seed: int, index: str,
         max_batch: int, progress: Optional[ProgressCallback], costs: Optional[CostModel],
         target_stderr: Optional[float]) -> InteractionEstimate:
    """The estimate, in rounds towards ``target_stderr`` when one is given."""
    if target_stderr is None:
        return estimator.estimate(value_fn, m, n, budget, seed, index, max_batch, progress, costs)
    if estimator.name not in NESTED:
        raise ArgumentError(f"target_stderr needs a method whose draws nest across budgets ({', '.join(NESTED)} "
                            f"or auto); got {estimator.name!r}")
    return estimate_to_precision(estimator, value_fn, m, n, budget, seed, index, max_batch, progress, costs,
                                 target_stderr)
