"""Stratified (SVARM-style) Shapley estimate from coalitions grouped by size.

For a game r on p players with r(empty) = r(full) = 0,

    Sh_i(r) = (1/p) sum_{u=1}^{p-1} [ mean_{|S|=u, i in S} r(S) - mean_{|S|=u, i not in S} r(S) ],

so each coalition of size u informs every player's two stratum means at once. Strata that
were enumerated give exact means; sampled strata give sample means, and the estimate's
influence matrix (per draw) says how much each draw moved it.
"""

from __future__ import annotations

import numpy as np

from multishap.service.math.estimators.regression import cluster_sums


def stratified_shapley(
    x: np.ndarray, r: np.ndarray, clusters: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values of r from rows x (bool, one per coalition), and their influence.

    Rows with ``clusters < 0`` belong to enumerated strata; a stratum is either entirely
    enumerated or entirely sampled; a stratum side with no sampled row counts as mean 0.
    Returns (estimate (p,), influence (n_clusters, p)): each draw's leave-one-out effect,
    scaled so that the squares sum to the jackknife variance.
    """
    p = x.shape[1]
    sizes = x.sum(axis=1)
    estimate = np.zeros(p)
    influence = np.zeros((n_clusters, p))
    for u in range(1, p):
        rows = np.flatnonzero(sizes == u)
        if len(rows) == 0:
            continue
        present = x[rows].astype(np.float64)
        values = r[rows]
        for side, sign in ((present, 1.0), (1.0 - present, -1.0)):
            count = side.sum(axis=0)
            mean = np.divide(side.T @ values, count, out=np.zeros(p), where=count > 0)
            estimate += sign * mean / p
            sampled = clusters[rows] >= 0
            if sampled.any():
                # Leaving a row out moves its mean by (r - mean) / (count - 1); a mean of a
                # single row falls back to 0, the convention for a stratum side never seen.
                v = values[sampled, None]
                shift = np.where(count > 1, (v - mean) / np.maximum(count - 1, 1), v)
                influence += sign * cluster_sums(side[sampled] * shift, clusters[rows][sampled], n_clusters) / p
    if n_clusters > 1:
        influence -= influence.mean(axis=0)
        influence *= np.sqrt((n_clusters - 1) / n_clusters)
    return estimate, influence
