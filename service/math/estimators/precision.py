"""Estimating to a precision target: rounds of growing budget that stop once every standard error is small enough.

Each round reruns the estimator with the same seed on one :class:`MemoisedValueFunction`
and a budget ``_GROWTH`` times the last, up to the caller's budget. For an estimator whose
draws at a budget extend its draws at a smaller one (the same seeded sequence of steps,
stopped later), a round pays only for its new coalitions, so all rounds together cost what
the last one alone would: the budget is never exceeded and ``evaluations`` counts the
distinct coalitions scored over all rounds. Only such estimators (``NESTED``) take a target.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from multishap.service.math.costs import CostModel
from multishap.service.math.estimators.base import Estimator
from multishap.service.math.estimators.coalitions import MemoisedValueFunction, ProgressCallback, ValueFunction
from multishap.service.math.estimators.result import InteractionEstimate

# Estimators whose draws nest across budgets (the exact one needs a single round).
NESTED = ("exact", "multishap", "controlled")
# Budget of each round over the previous one's.
_GROWTH = 4
# Least first round, in budget units, beyond the estimator's own minimum.
_FIRST_ROUND = 1_000


def reached(estimate: InteractionEstimate, target_stderr: float) -> bool:
    """Whether every entry's standard error is finite and at most the target."""
    return bool(np.all(np.isfinite(estimate.stderr)) and estimate.stderr.max(initial=0.0) <= target_stderr)


def estimate_to_precision(
    estimator: Estimator,
    value_fn: ValueFunction,
    m: int,
    n: int,
    budget: int,
    seed: int,
    index: str,
    max_batch: int,
    progress: Optional[ProgressCallback],
    costs: Optional[CostModel],
    target_stderr: float,
) -> InteractionEstimate:
    """Run ``estimator`` in rounds until the largest standard error is at most ``target_stderr``
    or ``budget`` is spent; arguments are already checked."""
    memo = MemoisedValueFunction(value_fn)
    report = None if progress is None else (lambda _done, _total: progress(memo.evaluations, budget))
    round_budget = min(budget, max(_FIRST_ROUND, estimator.min_budget(m, n)))
    while True:
        estimate = estimator.estimate(memo, m, n, round_budget, seed, index, max_batch, report, costs)
        done = reached(estimate, target_stderr)
        if done or round_budget >= budget:
            break
        round_budget = min(budget, round_budget * _GROWTH)
    return dataclasses.replace(estimate, evaluations=memo.evaluations, budget=budget,
                               target_stderr=target_stderr, target_stderr_reached=done)
