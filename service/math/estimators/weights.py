"""Coalition weights of the interaction indices and of the Shapley kernel."""

from __future__ import annotations

from math import lgamma

import numpy as np


def sii_weights(n_players: int) -> np.ndarray:
    """SII weight of a coalition S of each size s = 0..N-2 (pair excluded from S).

    w(s) = s! (N - s - 2)! / (N - 1)!; the weights of all subsets of N \\ {i, j} sum to 1.
    """
    s = np.arange(n_players - 1)
    return np.exp(
        [lgamma(k + 1) + lgamma(n_players - k - 1) - lgamma(n_players) for k in s]
    )


def bii_weights(n_players: int) -> np.ndarray:
    """Banzhaf interaction weight 2^-(N-2) of every coalition size s = 0..N-2."""
    return np.full(n_players - 1, 2.0 ** -(n_players - 2))


def shapley_weights(n_players: int) -> tuple[np.ndarray, np.ndarray]:
    """Shapley weights of v(S) in phi_k, by |S|: (+ weight if k in S, - weight if not).

    plus[s] = (s-1)! (N-s)! / N! for s >= 1; minus[s] = s! (N-s-1)! / N! for s <= N-1.
    """
    plus = np.zeros(n_players + 1)
    minus = np.zeros(n_players + 1)
    for s in range(n_players + 1):
        if s >= 1:
            plus[s] = np.exp(lgamma(s) + lgamma(n_players - s + 1) - lgamma(n_players + 1))
        if s <= n_players - 1:
            minus[s] = np.exp(lgamma(s + 1) + lgamma(n_players - s) - lgamma(n_players + 1))
    return plus, minus


def log_binom(n: int, k: np.ndarray | int) -> np.ndarray:
    """log C(n, k), elementwise."""
    k = np.asarray(k, dtype=np.float64)
    return np.array(
        [lgamma(n + 1) - lgamma(x + 1) - lgamma(n - x + 1) for x in k.ravel()]
    ).reshape(k.shape)


def shapley_kernel(n_players: int) -> np.ndarray:
    """Shapley kernel weight of one coalition of each size s = 0..N (0 at s = 0, N).

    mu(s) = (N - 1) / (C(N, s) s (N - s)): the weighted least-squares fit of a game under
    these weights, constrained to v(empty) and v(N), has the Shapley values as slopes.
    """
    mu = np.zeros(n_players + 1)
    s = np.arange(1, n_players)
    mu[1:n_players] = (n_players - 1) / (np.exp(log_binom(n_players, s)) * s * (n_players - s))
    return mu
