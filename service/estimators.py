"""Import shim: ``multishap.service.estimators``, where the README used to document it, now lives in
:mod:`multishap.service.math.estimators`; code written against the old path keeps working."""

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
