"""The one contract every estimator implements (as shapiq's approximators share one ``Game``).

An estimator has a name (the ``method=`` users pass), the indices it estimates, the least
budget one step of it needs for a game of m patches and n tokens, and ``run``, which
evaluates at most ``budget`` distinct coalitions of the value function. What it reports
beyond Φ (standard errors, Shapley values) is said in ``reports``; the registry
(:mod:`.registry`) turns these into validation, ``auto``, CLI help and the README's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from multishap.service.math.costs import CostModel
from multishap.service.math.estimators.coalitions import ProgressCallback, ValueFunction
from multishap.service.math.estimators.result import InteractionEstimate

INDICES = ("SII", "BII")


# run(value_fn, m, n, budget, seed, index, max_batch, progress, costs): ``costs`` None counts the
# budget in distinct coalitions; a CostModel counts it in that model's unit (encoder passes, ...).
Run = Callable[..., InteractionEstimate]


@dataclass(frozen=True)
class Estimator:
    """A cross-modal interaction estimator over a batched value function.

    ``run(value_fn, m, n, budget, seed, index, max_batch, progress)`` evaluates at most
    ``budget`` distinct coalitions; ``min_budget(m, n)`` is the fewest one step of it needs.
    """

    name: str
    summary: str        # one line, for CLI help
    description: str    # what it does, for the README's table
    reports: str        # what the result carries beyond Φ
    min_budget: Callable[[int, int], int]
    run: Run
    indices: tuple[str, ...] = INDICES
    # Most players it takes; beyond about 1000 the binomial coefficients of the size
    # distributions overflow float64.
    max_players: int = 1000

    def estimate(self, value_fn: ValueFunction, m: int, n: int, budget: int, seed: int, index: str,
                 max_batch: int, progress: Optional[ProgressCallback],
                 costs: Optional[CostModel] = None) -> InteractionEstimate:
        """Φ within ``budget`` (distinct coalitions, or units of ``costs``); arguments are already checked."""
        return self.run(value_fn, m, n, budget, seed, index, max_batch, progress, costs)
