"""The one contract every estimator implements (as shapiq's approximators share one ``Game``).

An estimator has a name (the ``method=`` users pass), the indices it estimates, the least
budget one step of it needs for a game of m patches and n tokens, and ``estimate``, which
evaluates at most ``budget`` distinct coalitions of the value function. What it reports
beyond Φ (standard errors, Shapley values) is said in ``reports``; the registry
(:mod:`.registry`) turns these into validation, ``auto``, CLI help and the README's table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

from multishap.service.math.estimators.coalitions import ProgressCallback, ValueFunction
from multishap.service.math.estimators.result import InteractionEstimate

INDICES = ("SII", "BII")


class Estimator(ABC):
    """A cross-modal interaction estimator over a batched value function."""

    name: str
    summary: str        # one line, for CLI help
    description: str    # what it does, for the README's table
    reports: str        # what the result carries beyond Φ
    indices: tuple[str, ...] = INDICES
    # Most players it takes; beyond about 1000 the binomial coefficients of the size
    # distributions overflow float64.
    max_players: int = 1000

    @abstractmethod
    def min_budget(self, m: int, n: int) -> int:
        """The fewest distinct coalitions one step of this estimator needs for m patches and n tokens."""

    @abstractmethod
    def estimate(self, value_fn: ValueFunction, m: int, n: int, budget: int, seed: int, index: str,
                 max_batch: int, progress: Optional[ProgressCallback]) -> InteractionEstimate:
        """Φ within ``budget`` distinct coalitions; arguments are already checked against this estimator."""
