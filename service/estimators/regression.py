"""Weighted least squares with an optional sum constraint and cluster-robust standard errors."""

from __future__ import annotations

from typing import Optional

import numpy as np


def weighted_least_squares(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    clusters: np.ndarray,
    total: Optional[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise sum_r w_r (y_r - z_r . beta)^2, subject to sum(beta) = total if given.

    Rows with ``clusters < 0`` are exact (enumerated) rows and carry no sampling noise;
    the others are importance-weighted samples grouped into independent clusters (one per
    draw). Returns beta and its standard errors from the linearised (sandwich) variance of
    the estimating equations over clusters. A rank-deficient system gets the minimum-norm
    solution rather than an error.
    """
    p = z.shape[1]
    zw = z * w[:, None]
    a = zw.T @ z
    b = zw.T @ y
    if total is None:
        kkt, rhs = a, b
    else:
        kkt = np.zeros((p + 1, p + 1))
        kkt[:p, :p] = a
        kkt[:p, p] = kkt[p, :p] = 1.0
        rhs = np.append(b, total)
    inverse = np.linalg.pinv(kkt, hermitian=True)
    beta = (inverse @ rhs)[:p]
    sampled = clusters >= 0
    n_clusters = len(np.unique(clusters[sampled]))
    if n_clusters < 2:
        return beta, np.full(p, np.inf)
    scores = zw[sampled] * (y[sampled] - z[sampled] @ beta)[:, None]
    _, cluster_index = np.unique(clusters[sampled], return_inverse=True)
    per_cluster = np.zeros((n_clusters, p))
    np.add.at(per_cluster, cluster_index, scores)
    per_cluster -= per_cluster.mean(axis=0)
    influence = per_cluster @ inverse[:p, :p]
    variance = (influence**2).sum(axis=0) * n_clusters / (n_clusters - 1)
    return beta, np.sqrt(variance)
