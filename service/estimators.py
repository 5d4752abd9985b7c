"""Import shim: the public API documented in the README moved to :mod:`multishap.service.math.estimators`."""

from multishap.service.math.estimators import (
    ESTIMATORS,
    Estimator,
    INDICES,
    InteractionEstimate,
    MAX_EXACT_PLAYERS,
    METHODS,
    choose_method,
    estimate_interactions,
    exact_interactions,
)

__all__ = ['ESTIMATORS', 'Estimator', 'INDICES', 'InteractionEstimate', 'MAX_EXACT_PLAYERS', 'METHODS', 'choose_method', 'estimate_interactions', 'exact_interactions']
