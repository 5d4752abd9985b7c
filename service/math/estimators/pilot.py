"""The `pilot` estimator: a small run of `kernel` and of `controlled`, then the rest of the budget on the one
whose standard errors promise the smaller error.

Neither sampler wins everywhere. `kernel` regresses derivative games and is far ahead on games
whose derivative games are close to additive (the synthetic families); `controlled` averages
Algorithm 1's pair differences and is far ahead where the derivative games vary a lot (the real
dual encoder, whose token-token interactions dwarf the cross-modal ones). Both report jackknife
standard errors, and a run at budget b has a total variance of about V / b for either, so two
pilots at the same small budget compare the constants V directly.

Both pilots run on one :class:`MemoisedValueFunction`, and the final run reuses what they
scored: `controlled`'s draws nest across budgets, so its pilot is the start of its final run;
`kernel`'s do not, so its final budget leaves out both pilots. Either way the distinct
coalitions over all runs stay within the budget, and ``evaluations`` counts them. Budgets too
small for two pilots of at least 1,000 coalitions and three `controlled` steps each within a
fifth of the budget, cost-unit budgets and BII go straight to `controlled`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from multishap.service import defaults
from multishap.service.math.costs import CostModel
from multishap.service.math.estimators.base import Estimator
from multishap.service.math.estimators.coalitions import MemoisedValueFunction, ProgressCallback, ValueFunction
from multishap.service.math.estimators.controlled import CONTROLLED
from multishap.service.math.estimators.kernel import KERNEL
from multishap.service.math.estimators.result import InteractionEstimate

# Share of the budget each pilot spends; the fewest coalitions a pilot may have, and in units of
# `controlled`'s minimum (shorter pilots choose wrongly too often on the real model's games).
_PILOT_SHARE = 0.1
_PILOT_MIN = 1000
_PILOT_STEPS = 3
# How many times smaller kernel's pilot variance must be for it to be chosen.
_KERNEL_MARGIN = 2.0
_CLIP_QUANTILE = 0.9


def prefers_controlled(kernel: InteractionEstimate, controlled: InteractionEstimate) -> bool:
    """Whether `controlled`'s pilot promises the smaller error.

    Each pilot's variance is the mean over the entries it informed, with each entry's variance
    clipped at their ``_CLIP_QUANTILE`` (a short pilot's few-sample variances have long tails);
    kernel's counts ``_KERNEL_MARGIN`` times (its jackknife is the more optimistic of the two on
    real models, and `controlled`'s adaptive sizes and regressions pay off only after its pilot).
    A pilot that informed nothing loses.
    """
    def spread(estimate: InteractionEstimate) -> float:
        variance = estimate.stderr[np.isfinite(estimate.stderr)] ** 2
        if not len(variance):
            return np.inf
        return float(np.mean(np.minimum(variance, np.quantile(variance, _CLIP_QUANTILE))))

    return spread(controlled) <= _KERNEL_MARGIN * spread(kernel)


def min_budget(m: int, n: int) -> int:
    """What `controlled` needs (the pilots are skipped below their own minimum)."""
    return CONTROLLED.min_budget(m, n)


def pilot_estimate(
    value_fn: ValueFunction,
    m: int,
    n: int,
    budget: int,
    seed: int,
    index: str = "SII",
    max_batch: int = defaults.MAX_BATCH,
    progress: Optional[ProgressCallback] = None,
    costs: Optional[CostModel] = None,
) -> InteractionEstimate:
    """Pilot `kernel` and `controlled` on a share of the budget each; finish with the more precise."""
    share = max(int(budget * _PILOT_SHARE), _PILOT_MIN, _PILOT_STEPS * CONTROLLED.min_budget(m, n), KERNEL.min_budget(m, n))
    if index != "SII" or costs is not None or share > 2 * _PILOT_SHARE * budget:
        estimate = CONTROLLED.estimate(value_fn, m, n, budget, seed, index, max_batch, progress, costs)
        return dataclasses.replace(estimate, method="pilot")
    memo = MemoisedValueFunction(value_fn)
    report = None if progress is None else (lambda _done, _total: progress(memo.evaluations, budget))
    kernel = KERNEL.estimate(memo, m, n, share, seed, index, max_batch, report)
    controlled = CONTROLLED.estimate(memo, m, n, share, seed, index, max_batch, report)
    if prefers_controlled(kernel, controlled):
        # Its pilot's coalitions are the start of the final run; the kernel pilot's others are spent.
        final_budget = budget - (memo.evaluations - controlled.evaluations)
        winner = CONTROLLED
    else:
        final_budget = budget - memo.evaluations
        winner = KERNEL
    estimate = winner.estimate(memo, m, n, final_budget, seed, index, max_batch, report)
    return dataclasses.replace(estimate, evaluations=memo.evaluations, budget=budget, method="pilot")


PILOT = Estimator(
    name="pilot",
    summary="pilots `kernel` and `controlled` on 10% of the budget each, then spends the rest on the one with the "
            "smaller predicted error",
    description=("runs `kernel` and `controlled` on 10% of the budget each (one memo, so nothing is scored twice), "
                 "compares their mean jackknife variances (kernel's doubled: it is the more optimistic, and "
                 "`controlled` gains more from a longer run), and spends the rest of the budget on the smaller "
                 "(`controlled`'s pilot is the start of its final run); budgets too small for two pilots of "
                 "≥ 1,000 coalitions (and ≥ 3 `controlled` steps) within a fifth of the budget, cost-unit budgets and "
                 "BII go straight to `controlled`"),
    reports="Φ with the chosen estimator's standard errors (and, when it is `kernel`, the players' Shapley values)",
    min_budget=min_budget,
    run=pilot_estimate,
)
