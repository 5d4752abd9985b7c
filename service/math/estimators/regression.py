"""Weighted least squares with an optional sum constraint, and its per-draw influence."""

from __future__ import annotations

from typing import Optional

import numpy as np


def cluster_sums(values: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Sum the rows of ``values`` within each cluster id 0..n_clusters-1."""
    out = np.zeros((n_clusters,) + values.shape[1:])
    np.add.at(out, clusters, values)
    return out


def weighted_least_squares(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    clusters: np.ndarray,
    total: Optional[float],
    n_clusters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise sum_r w_r (y_r - z_r . beta)^2, subject to sum(beta) = total if given.

    Rows with ``clusters < 0`` are exact (enumerated) rows and carry no sampling noise;
    the others are importance-weighted samples grouped into independent draws
    0..n_clusters-1. Returns beta and its influence matrix (n_clusters, p): each draw's
    centred leave-one-out effect on beta, whose squares sum to beta's variance.
    A rank-deficient system gets the minimum-norm solution rather than an error.
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
    sampled = np.flatnonzero(clusters >= 0)
    return beta, _leave_one_draw_out(z[sampled], w[sampled], y[sampled] - z[sampled] @ beta,
                                     clusters[sampled], n_clusters, inverse[:p, :p])


def _leave_one_draw_out(
    z: np.ndarray, w: np.ndarray, resid: np.ndarray, clusters: np.ndarray, n_clusters: int, proj: np.ndarray
) -> np.ndarray:
    """Jackknife influence of each draw: how much beta moves when that draw is left out.

    For least squares the change is exact in closed form, proj Z_c' W_c (I - H_cc)^-1 e_c,
    with H_cc the draw's own leverage block (draws have one or two rows: a base and its
    complement). A draw the fit interpolates (leverage 1) has infinite influence, which is
    what tells a caller that the fit has too few rows to be trusted. Scaled so that the
    squared influences sum to the jackknife variance.
    """
    p = proj.shape[0]
    if n_clusters < 2:
        return np.full((max(n_clusters, 1), p), np.inf)
    g = z @ proj
    order = np.argsort(clusters, kind="stable")
    z, w, resid, g, clusters = z[order], w[order], resid[order], g[order], clusters[order]
    first = np.r_[True, clusters[1:] != clusters[:-1]]
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(clusters)])
    if counts.max(initial=0) > 2:
        raise ValueError("a draw contributes at most two rows (a base and its complement)")
    a = starts
    b = np.where(counts == 2, starts + 1, starts)
    pair = counts == 2
    h_aa = np.einsum("ij,ij->i", g[a], z[a]) * w[a]
    h_bb = np.einsum("ij,ij->i", g[b], z[b]) * w[b]
    h_ab = np.where(pair, np.einsum("ij,ij->i", g[a], z[b]) * w[b], 0.0)
    h_ba = np.where(pair, np.einsum("ij,ij->i", g[b], z[a]) * w[a], 0.0)
    m11, m22 = 1.0 - h_aa, np.where(pair, 1.0 - h_bb, 1.0)
    m12, m21 = -h_ab, -h_ba
    det = m11 * m22 - m12 * m21
    e_a, e_b = resid[a], np.where(pair, resid[b], 0.0)
    unstable = det <= 1e-10
    influence = np.zeros((n_clusters, p))
    # Unstable draws divide by a zero determinant; their rows are replaced by inf just below.
    with np.errstate(divide="ignore", invalid="ignore"):
        u_a = (m22 * e_a - m12 * e_b) / det
        u_b = (m11 * e_b - m21 * e_a) / det
        influence[clusters[a]] = g[a] * (w[a] * u_a)[:, None]
        influence[clusters[a]] += np.where(pair[:, None], g[b] * (w[b] * u_b)[:, None], 0.0)
    influence[clusters[a][unstable]] = np.inf
    if np.isinf(influence).any():
        return np.full((n_clusters, p), np.inf)
    influence -= influence.mean(axis=0)
    return influence * np.sqrt((n_clusters - 1) / n_clusters)


def standard_errors(influence: np.ndarray) -> np.ndarray:
    """Standard errors from a (draws, p) influence matrix; inf with fewer than two draws."""
    if influence.shape[0] < 2:
        return np.full(influence.shape[1], np.inf)
    return np.sqrt((influence**2).sum(axis=0))
